/**
 * Staged export pages and partition chunks as the relay stores them (v2): a header
 * line, then one line per member,
 *
 *     <id as a JSON string> TAB <fnv-52 property hash> TAB <properties as canonical JSON>
 *
 * Why lines and not one JSON document (v1, `{"members":[...]}`): the property hash
 * is computed once, when the page is staged, from the canonical text that is also
 * the stored properties; the spill step (emit.ts) moves a member to its
 * partition by reading only its id and copying the line as it is; and the diff
 * parses the properties of the members it sends (a few percent of a run) only.
 * A JSON string never holds a raw tab or newline (JSON.stringify escapes them), so
 * the first tab ends the id and every member is one line.
 *
 * v2 objects are stored as plain text, not gzipped: they live for one run (the
 * `cohort-runs/` lifecycle rule), S3 bills them per request rather than per byte,
 * and gzip plus gunzip cost about as much CPU per member as the whole diff.
 * v1 objects (gzipped JSON) are read too, and turned into the same lines, so a run
 * that an earlier deploy staged still completes; their key names (`.json.gz`) stay
 * so such a run still finds them.
 *
 * Writing: staged-page-writer.ts; reading: staged-line-reader.ts, staged-rows.ts
 * (for the diff) and partition-splitter.ts (for the spill).
 */
export const STAGED_HEADER = '{"staged":2}';

/** The header line as bytes, newline included: what a v2 object starts with. */
export const STAGED_HEADER_BYTES = Buffer.from(`${STAGED_HEADER}\n`);

/** The text of a staged page or partition chunk holding `lines`. */
export function stagedText(lines: readonly string[]): string {
  // One join (a flat string), not a template around it: encoding a concatenation flattens it first.
  return [STAGED_HEADER, ...lines, ""].join("\n");
}
