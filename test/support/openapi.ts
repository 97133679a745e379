// What every operation of every OpenAPI document of the product must say, as one line per
// problem: an operationId (unique), a summary, a tag, its security (`[]` for a public
// route, otherwise schemes the document defines), a successful answer, and its refusals as
// the server's one error schema, CodedError (at least one 4xx, and no 4xx or 500 JSON body
// described any other way).
import { ERROR_CODES } from '../../platform/errors.ts';
import { ERROR_SCHEMA_ID } from '../../platform/http.ts';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
export const CODED_ERROR_REF = `#/components/schemas/${ERROR_SCHEMA_ID}`;

interface Response {
  description?: string;
  content?: Record<string, { schema?: { $ref?: string; allOf?: { $ref?: string }[] } }>;
}
interface Operation {
  operationId?: string;
  summary?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  responses?: Record<string, Response>;
}
export interface OpenApiDocument {
  info?: { license?: { name?: string } };
  servers?: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
  components?: {
    securitySchemes?: Record<string, unknown>;
    schemas?: Record<
      string,
      { required?: string[]; properties?: Record<string, { enum?: string[] }> }
    >;
  };
}

export function operationProblems(doc: OpenApiDocument): string[] {
  const problems: string[] = [];
  const schemes = Object.keys(doc.components?.securitySchemes ?? {});
  const error = doc.components?.schemas?.[ERROR_SCHEMA_ID];
  if (!error) problems.push(`components.schemas.${ERROR_SCHEMA_ID} is missing`);
  else {
    if (!['code', 'message'].every((f) => error.required?.includes(f)))
      problems.push(`${ERROR_SCHEMA_ID} must require code and message`);
    const codes = error.properties?.code?.enum ?? [];
    if (codes.length === 0 || codes.some((c) => !(c in ERROR_CODES)))
      problems.push(`${ERROR_SCHEMA_ID}.code must list the codes of platform/errors.ts`);
  }
  if (!doc.info?.license?.name) problems.push('info.license is missing');
  if (!doc.servers?.length) problems.push('servers is missing');
  const ids = new Map<string, string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      const at = `${method.toUpperCase()} ${path}`;
      if (!op.operationId) problems.push(`${at}: no operationId`);
      else if (ids.has(op.operationId))
        problems.push(`${at}: operationId ${op.operationId} is also ${ids.get(op.operationId)}'s`);
      else ids.set(op.operationId, at);
      if (!op.summary?.trim()) problems.push(`${at}: no summary`);
      if (!op.tags?.length) problems.push(`${at}: no tag`);
      if (!Array.isArray(op.security)) problems.push(`${at}: no security (a public route says [])`);
      for (const name of (op.security ?? []).flatMap((s) => Object.keys(s)))
        if (!schemes.includes(name)) problems.push(`${at}: security scheme ${name} is not defined`);
      const responses = Object.entries(op.responses ?? {});
      if (!responses.some(([status]) => /^[23]\d\d$/.test(status)))
        problems.push(`${at}: no successful answer (2xx or 3xx)`);
      // The coded error, or the coded error extended (allOf, the coded error first).
      const coded = ([, r]: [string, Response]) => {
        const schema = r.content?.['application/json']?.schema;
        return schema?.$ref === CODED_ERROR_REF || schema?.allOf?.[0]?.$ref === CODED_ERROR_REF;
      };
      if (!responses.some((r) => r[0].startsWith('4') && coded(r)))
        problems.push(`${at}: no 4xx answer with the ${ERROR_SCHEMA_ID} schema`);
      // A 503 may say more than a refusal (the HealthReport of /health); a 4xx and a 500 may not.
      for (const r of responses) {
        if (!/^(4\d\d|500)$/.test(r[0])) continue;
        if (!r[1].description?.trim()) problems.push(`${at}: ${r[0]} has no description`);
        if (r[1].content?.['application/json'] && !coded(r))
          problems.push(`${at}: ${r[0]} describes its JSON body other than as ${ERROR_SCHEMA_ID}`);
      }
    }
  }
  return problems;
}
