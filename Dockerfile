# The lifecycle processes (`lifecycle run ingest|engine|delivery|sink|scheduler|api`) and
# the demo, from the TypeScript sources run through tsx.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# npm install, not npm ci: the lock file lacks optional per-platform packages of other systems.
RUN npm install --no-audit --no-fund && npm cache clean --force
COPY . .
USER node
ENTRYPOINT ["bin/lifecycle"]
CMD ["--help"]
