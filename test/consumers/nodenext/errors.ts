// The error constructors keep their codes and statuses in the types (not `any`).
import { errors } from 'fastify-token-sessions'

const error = new errors.TokenExpiredError()
const code: 'FTS_TOKEN_EXPIRED' = error.code
const status: 401 = error.statusCode
// @ts-expect-error the code is a literal type
const wrong: 'FTS_TOKEN_MISSING' = error.code
export { code, status, wrong }
