/** Durations as kubectl and Go write them: "500ms", "30s", "10m", "1h30m" (weirctl flags, the console). */
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(t)) return undefined;
  let ms = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return ms;
}

/** A duration in a few characters: 45s, 3m, 2h. */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** A point in time as `--since` takes it: a duration back from `now` (10m) or an RFC 3339 time; undefined when neither. */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const d = parseDuration(text);
  if (d !== undefined) return now - d;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}
