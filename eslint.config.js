// The linter of the Fastify ecosystem: neostandard (standard's rules on ESLint's flat
// config), with TypeScript.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'example-app/dist/**', 'coverage/**', '.tap/**', 'artifacts/**', 'bench/profiles/**']
  }),
  {
    // The example's page runs in the browser.
    files: ['example-app/public/**/*.js'],
    languageOptions: { globals: { HTMLButtonElement: 'readonly' } }
  }
]
