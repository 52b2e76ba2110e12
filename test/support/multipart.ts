/** Test helper: parsing multipart/byteranges answers (RFC 9110 §14.6). */

/** Splits a multipart/byteranges body (RFC 9110 §14.6) into its parts' Content-Range and bytes. */
export function multipartByteranges(body: Buffer, boundary: string): { range: string; body: Buffer }[] {
  const parts: { range: string; body: Buffer }[] = [];
  const delim = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delim);
  while (at >= 0) {
    const after = at + delim.length;
    if (body.subarray(after, after + 2).toString() === '--') return parts;
    const headEnd = body.indexOf('\r\n\r\n', after);
    const head = body.subarray(after, headEnd).toString('latin1');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), headEnd);
    if (headEnd < 0 || next < 0) throw new Error('truncated multipart body');
    parts.push({ range: /content-range:\s*(.+)/i.exec(head)?.[1]?.trim() ?? '', body: body.subarray(headEnd + 4, next) });
    at = next + 2;
  }
  throw new Error('no closing boundary');
}
