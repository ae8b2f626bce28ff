// Preloaded (`node --import`) into one app instance of a fault-injection run: shifts its
// wall clock by FAULTS_CLOCK_OFFSET_MS (`Date.now()` and `new Date()`), as a machine whose
// time sync is off. The monotonic clock (`performance.now()`) is left alone, as it would be.
const offset = Number(process.env.FAULTS_CLOCK_OFFSET_MS ?? 0)
const RealDate = Date
const realNow = RealDate.now

class ShiftedDate extends RealDate {
  /** @param {...any} args */
  constructor (...args) {
    if (args.length === 0) super(realNow() + offset)
    else super(...(/** @type {[]} */ (args)))
  }

  static now () {
    return realNow() + offset
  }
}

Reflect.set(globalThis, 'Date', ShiftedDate)

// A module, not a script: its names stay its own.
export {}
