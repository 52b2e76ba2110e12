/**
 * Size caps the manager and the scheduler's job worker share, so that nothing the manager accepts
 * can be refused when the scheduler reports back (a refused final report used to be retried forever
 * and hold a worker slot). The manager imports these for its job schemas; the worker trims its
 * reports to them.
 */

/** Longest URL a job may name (characters). */
export const MAX_URL_LENGTH = 4096;
/** Most URLs one file preheat may name. */
export const MAX_URLS = 1000;
/** Longest free-text job argument (tag, application, filtered_query_params, ...). */
export const MAX_ARG_LENGTH = 1024;
/** Most request headers a preheat may carry, and the longest header value. */
export const MAX_HEADERS = 64;
export const MAX_HEADER_VALUE = 8192;
/** Longest error text a report may carry; the worker truncates to this. */
export const MAX_REPORT_ERROR = 16 * 1024;
/** Largest report body (JSON bytes) the worker sends; the manager's report route accepts at least this. */
export const MAX_REPORT_BYTES = 512 * 1024;

/** `s` cut to at most `max` characters, saying how much was cut (never splits a surrogate pair). */
export function truncateText(s: string, max: number): string {
  if (s.length <= max) return s;
  const note = `… (${s.length - max} more characters)`;
  let end = Math.max(0, max - note.length);
  if (end > 0 && /[\uD800-\uDBFF]/.test(s[end - 1])) end--;
  return s.slice(0, end) + note;
}

/** `text` with the userinfo of every URL in it replaced, so no password rides in an error message. */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^\s/?#@]*@/g, '$1***@');
}
