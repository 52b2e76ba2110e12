/**
 * AWS Lambda entry: the same app behind a Function URL / API Gateway v2. Configuration comes as YAML
 * (or JSON) text in DAMSELFLY_MANAGER_CONFIG, secrets from the DAMSELFLY_* environment. Deps are
 * built once per container and reused across invocations.
 */
import { handle } from 'hono/aws-lambda';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../adapters/config.js';
import { createApp } from './app.js';
import { managerConfigSchema, withEnvSecrets } from './config.js';
import { registerOpenApi } from './openapi.js';
import { loadDeps } from './server.js';

type Handler = ReturnType<typeof handle>;
let ready: Promise<Handler> | undefined;

async function build(): Promise<Handler> {
  const text = process.env.DAMSELFLY_MANAGER_CONFIG ?? '';
  const config = withEnvSecrets(parseConfig(managerConfigSchema, text ? parseYaml(text) : {}, 'DAMSELFLY_MANAGER_CONFIG'));
  // On Lambda stderr goes to CloudWatch: a generated password would be a secret in a log store.
  const deps = await loadDeps(config, { requireRootPassword: true, metrics: false });
  // API Gateway v2 / Function URL: the caller's address as the gateway saw it (not X-Forwarded-For).
  deps.clientAddress = (c) => {
    const rc = (c.env as { requestContext?: { http?: { sourceIp?: string }; identity?: { sourceIp?: string } } } | undefined)?.requestContext;
    return rc?.http?.sourceIp ?? rc?.identity?.sourceIp;
  };
  const app = createApp(deps);
  registerOpenApi(app);
  return handle(app);
}

/** The Lambda handler. A failed cold start is retried on the next invocation. */
export const handler = async (event: Parameters<Handler>[0], context: Parameters<Handler>[1]) => {
  ready ??= build().catch((err) => {
    ready = undefined;
    throw err;
  });
  return (await ready)(event, context);
};
