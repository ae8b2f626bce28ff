# syntax=docker/dockerfile:1
# The example app (example-app/) as an image. Built from the repository's root:
#   docker build -t fastify-token-sessions-example .

# Build: the plugin and the example app, with the repository's dev dependencies.
FROM node:24-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.client.json ./
COPY scripts ./scripts
COPY lib ./lib
COPY client ./client
COPY example-app ./example-app
RUN npm run build && npm pack --ignore-scripts --pack-destination /tmp

# Run: only what the app needs (example-app/deploy/package.json and the packed plugin),
# as the unprivileged `node` user.
FROM node:24-alpine
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY example-app/deploy/package.json ./package.json
COPY --from=build /tmp/fastify-token-sessions-*.tgz /tmp/
RUN npm install --omit=dev --no-audit --no-fund /tmp/fastify-token-sessions-*.tgz \
  && npm cache clean --force && rm /tmp/fastify-token-sessions-*.tgz
COPY --from=build /src/example-app/dist ./dist
COPY example-app/public ./public
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server.js"]
