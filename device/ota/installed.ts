/**
 * Whether the device already runs a release (SPEC.md §12.10): an announcement names the SHA-256 of
 * the manifest ENVELOPE, the state record the manifest digest (of the payload); both are compared
 * with what the active slot holds, so a release is never fetched twice and a re-signed manifest of
 * the installed image counts as installed.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { activeSlotOf, type UpdateAgent } from '../agent/agent.js';
import { type Flash } from '../agent/flash.js';
import { type Layout } from '../agent/layout.js';
import { readManifestArea } from '../agent/slot.js';

type Sha256 = (data: Uint8Array) => Uint8Array;

/** The announced envelope is the one stored for the active slot, and the one the state names. */
export function announcedInstalled(agent: UpdateAgent, flash: Flash, layout: Layout, sha256: Sha256, announcedEnvelopeDigest: Uint8Array): boolean {
  const s = agent.status();
  if (!s.ok || !s.state.installed) return false;
  const stored = readManifestArea(flash, layout, activeSlotOf(s.state));
  if (!stored.ok || !bytesEqual(sha256(stored.envelope), announcedEnvelopeDigest)) return false;
  const env = parseEnvelope(stored.envelope);
  return env.ok && bytesEqual(sha256(env.envelope.payload), s.state.installed);
}

/** The envelope's manifest digest (payload) is the installed one. */
export function payloadInstalled(agent: UpdateAgent, sha256: Sha256, envelope: Uint8Array): boolean {
  const s = agent.status();
  const env = parseEnvelope(envelope);
  return s.ok && !!s.state.installed && env.ok && bytesEqual(sha256(env.envelope.payload), s.state.installed);
}
