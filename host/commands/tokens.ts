/**
 * `fwseal token create|list|revoke`: the tokens file of the server's HTTP API (SPEC.md §12.9 "HTTP
 * API"; host/ota/tokens.ts). `token create` prints the new token on stdout once: it is the only
 * secret fwseal ever prints, by design, because the file keeps only its SHA-256 and nobody can show
 * it again. Every other output names tokens, never their digests.
 */
import { FwsealError } from '../errors.js';
import { createToken, ROLES, type Role, readTokensFile, revokeToken, type TokenInfo } from '../ota/tokens.js';
import { type Command, type Io, json, noPositionals, onePositional, type Parsed, str } from './common.js';

const TOKENS_USAGE = `--tokens FILE is the tokens file that fwseal serve --tokens FILE reads (JSON, mode 0600; it
holds each token's name, role, creation time and SHA-256, never the token). A running server
re-reads it when it changes: a new token works, a revoked one is refused, from the next request.`;

/** What may be shown of a token: never its digest. */
const shown = (t: TokenInfo) => ({ name: t.name, role: t.role, created: t.created });

function role(p: Parsed): Role {
  const r = str(p, 'role', true);
  if (!(ROLES as readonly string[]).includes(r)) throw new FwsealError('USAGE', `--role must be one of ${ROLES.join(', ')}`);
  return r as Role;
}

export const tokenCreate: Command = {
  name: 'token create',
  summary: 'add a named API token with a role to a tokens file; prints the token once',
  usage: `fwseal token create NAME --role viewer|operator|admin --tokens FILE [--json]

Makes a random 256-bit token (fwseal_ and 43 base64url characters), adds NAME, the role and the
token's SHA-256 to FILE (created 0600 if missing) and prints the token on stdout, ONCE: this is the
only secret fwseal ever prints, on purpose, since FILE keeps only the digest and the token cannot be
shown again. Hand it to its holder (for the CLI: FWSEAL_SERVER_TOKEN); lose it and revoke it.
Roles: viewer reads everything (every GET); operator also creates, pauses, resumes and aborts
campaigns and uploads images; admin also publishes trust bundles and revocation lists.
NAME (1-64 of A-Z a-z 0-9 . _ @ -) is what the server's audit log records for the token's calls.
--json prints {name, role, created, token}.
${TOKENS_USAGE}

Examples:
  fwseal token create ci-deploy --role operator --tokens tokens.json`,
  options: { role: { type: 'string' }, tokens: { type: 'string' }, json: { type: 'boolean' } },
  run(p: Parsed, io: Io) {
    const name = onePositional(p, 'token NAME');
    const file = str(p, 'tokens', true);
    const r = createToken(file, name, role(p));
    io.audit?.({ action: 'token create', kind: 'api-token', digest: r.info.sha256, file, result: 'ok' });
    if (p.values.json) json(io, { ...shown(r.info), token: r.token });
    else io.stdout(`${r.token}\n`);
    io.stderr(
      `${r.createdFile ? `created ${file}; ` : ''}token ${name} (${r.info.role}) added. It is shown only now: store it (e.g. as FWSEAL_SERVER_TOKEN of its holder).\n`,
    );
    return 0;
  },
};

export const tokenList: Command = {
  name: 'token list',
  summary: 'list the API tokens of a tokens file (names, roles, creation times)',
  usage: `fwseal token list --tokens FILE [--json]

One line per token: name, role, created (UTC). Never the token or its digest.
--json prints {tokens: [{name, role, created}]}.
${TOKENS_USAGE}

Examples:
  fwseal token list --tokens tokens.json`,
  options: { tokens: { type: 'string' }, json: { type: 'boolean' } },
  run(p: Parsed, io: Io) {
    noPositionals(p);
    const { tokens } = readTokensFile(str(p, 'tokens', true));
    if (p.values.json) {
      json(io, { tokens: tokens.map(shown) });
      return 0;
    }
    if (tokens.length === 0) io.stderr('no tokens: every API call will be refused\n');
    const width = Math.max(4, ...tokens.map((t) => t.name.length));
    const lines = tokens.map((t) => `${t.name.padEnd(width)}  ${t.role.padEnd(8)}  ${t.created}\n`);
    io.stdout(tokens.length === 0 ? '' : `${'NAME'.padEnd(width)}  ROLE      CREATED\n${lines.join('')}`);
    return 0;
  },
};

export const tokenRevoke: Command = {
  name: 'token revoke',
  summary: 'remove an API token from a tokens file; a running server refuses it at once',
  usage: `fwseal token revoke NAME --tokens FILE [--json]

Removes NAME from FILE. A server running with --tokens FILE re-reads it and answers the token's next
request 401 UNAUTHORIZED; no restart. An unknown NAME is NOT_FOUND (exit 2).
--json prints {revoked: {name, role, created}}.
${TOKENS_USAGE}

Examples:
  fwseal token revoke ci-deploy --tokens tokens.json`,
  options: { tokens: { type: 'string' }, json: { type: 'boolean' } },
  run(p: Parsed, io: Io) {
    const name = onePositional(p, 'token NAME');
    const file = str(p, 'tokens', true);
    const gone = revokeToken(file, name);
    io.audit?.({ action: 'token revoke', kind: 'api-token', digest: gone.sha256, file, result: 'ok' });
    if (p.values.json) json(io, { revoked: shown(gone) });
    else io.stdout(`revoked token ${gone.name} (${gone.role}) from ${file}\n`);
    return 0;
  },
};

export const TOKEN_COMMANDS: readonly Command[] = Object.freeze([tokenCreate, tokenList, tokenRevoke]);
