// The build's last step: records that the build just made matches its inputs (build-stamp.mjs).
import { writeStamp } from './build-stamp.mjs'

writeStamp()
