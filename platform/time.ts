// Time zones: the one check of an IANA zone name that rules, the engine's schedules and
// delivery's quiet hours share, so a zone accepted in one room is accepted in all.

const knownZones = new Map<string, boolean>();
/** Zone names come from user traits: the cache is bounded so a flood of made-up names cannot grow it. */
const MAX_REMEMBERED = 10_000;

/** True when `tz` is an IANA time zone this runtime can format times in (`Europe/Berlin`, `UTC`). */
export function isValidTimezone(tz: string): boolean {
  let ok = knownZones.get(tz);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      ok = true;
    } catch {
      ok = false;
    }
    if (knownZones.size < MAX_REMEMBERED) knownZones.set(tz, ok);
  }
  return ok;
}
