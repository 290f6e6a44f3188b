import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { glob, isDynamicPattern } from "tinyglobby";
import type { S3ListPage } from "../aws/s3-bucket.js";
import { type FileRef, type ImportFormat, formatFromName } from "./read-rows.js";

/**
 * The command line's sources as files, in a stable order: `-` is standard input, a glob
 * (`exports/*.ndjson.gz`) its matches, a folder every file in it (recursively) whose name
 * says a format, `s3://bucket/prefix` every object under the prefix whose name says a format
 * (read as a stream, never downloaded whole), anything else the file itself. A source that matches nothing is an error
 * before anything is sent, so a typo never imports half a history.
 */
export interface ResolvedFile {
  readonly ref: FileRef;
  readonly format: ImportFormat;
}

async function filesUnder(folder: string): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(folder, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...(await filesUnder(path)));
    else if (entry.isFile() && formatFromName(entry.name) !== undefined) found.push(path);
  }
  return found;
}

function withFormat(ref: FileRef, explicit: ImportFormat | undefined): ResolvedFile {
  const format = explicit ?? formatFromName(ref.path);
  if (format === undefined) throw new Error(`${ref.path}: cannot tell the format from the name; pass --format ndjson|json|csv|parquet|braze-avro`);
  return { ref, format };
}

/** What S3 sources need: ListObjectsV2 pages and a streamed GetObject (lib/aws). */
export interface S3SourceApi {
  listObjectsV2(bucket: string, prefix: string, continuationToken?: string): Promise<S3ListPage>;
  openObject(bucket: string, key: string): Promise<Readable>;
}

/** S3 refused or failed a listing (credentials, a missing bucket): the run cannot start. */
export class S3ListingError extends Error {
  override readonly name = "S3ListingError";
}

const S3_URL = /^s3:\/\/([^/]+)\/?(.*)$/;

/** `s3://bucket/prefix` as its parts, or undefined for anything else. */
export function parseS3Url(source: string): { bucket: string; prefix: string } | undefined {
  const match = S3_URL.exec(source);
  return match ? { bucket: match[1] as string, prefix: match[2] ?? "" } : undefined;
}

export function isS3Source(source: string): boolean {
  return source.startsWith("s3://");
}

/**
 * ListObjectsV2 answers at most 1,000 keys a page
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html): 10,000 pages is ten
 * million objects under one prefix, far past any history export, and keeps the loop bounded.
 */
const MAX_LIST_PAGES = 10_000;

/** Every object under the prefix whose name says a format (or every object, with --format), in key order. */
async function objectsUnder(api: S3SourceApi, source: string, explicitFormat: ImportFormat | undefined): Promise<ResolvedFile[]> {
  const url = parseS3Url(source);
  if (!url || url.bucket === "") throw new Error(`${source}: an S3 source is s3://bucket/prefix`);
  const files: ResolvedFile[] = [];
  let token: string | undefined;
  for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
    const listed = await api.listObjectsV2(url.bucket, url.prefix, token).catch((error: unknown) => {
      throw new S3ListingError(`${source}: S3 would not list it: ${error instanceof Error ? error.message : String(error)}`);
    });
    for (const key of listed.keys) {
      // "Folder" placeholder objects hold no rows.
      if (key.endsWith("/")) continue;
      const format = explicitFormat ?? formatFromName(key);
      if (format === undefined) continue;
      const path = `s3://${url.bucket}/${key}`;
      files.push({ ref: { kind: "stream", path, open: () => api.openObject(url.bucket, key) }, format });
    }
    token = listed.nextContinuationToken;
    if (token === undefined) break;
    if (page === MAX_LIST_PAGES - 1) throw new Error(`${source}: more than ${MAX_LIST_PAGES} pages of objects; import narrower prefixes`);
  }
  if (files.length === 0) throw new Error(`${source} holds no object named .ndjson, .jsonl, .json, .csv, .parquet or .avro (optionally .gz); pass --format to read others`);
  return files.sort((a, b) => (a.ref.path < b.ref.path ? -1 : a.ref.path > b.ref.path ? 1 : 0));
}

/** The sources as files; `s3://` sources need `s3`. */
export async function resolveSources(sources: readonly string[], explicitFormat: ImportFormat | undefined, s3?: S3SourceApi): Promise<ResolvedFile[]> {
  const files: ResolvedFile[] = [];
  for (const source of sources) {
    if (isS3Source(source)) {
      if (!s3) throw new Error(`${source}: S3 sources need the stage's AWS access`);
      files.push(...(await objectsUnder(s3, source, explicitFormat)));
      continue;
    }
    if (source === "-") {
      if (explicitFormat === undefined) throw new Error("standard input (-) needs --format");
      files.push({ ref: { kind: "stdin", path: "-" }, format: explicitFormat });
      continue;
    }
    if (isDynamicPattern(source)) {
      const matches = (await glob(source, { onlyFiles: true, absolute: false, expandDirectories: false })).sort();
      if (matches.length === 0) throw new Error(`${source} matches no file`);
      files.push(...matches.map((path) => withFormat({ kind: "local", path }, explicitFormat)));
      continue;
    }
    const info = await stat(source).catch(() => undefined);
    if (info?.isDirectory()) {
      const under = await filesUnder(source);
      if (under.length === 0) throw new Error(`${source} holds no file named .ndjson, .jsonl, .json, .csv, .parquet or .avro (optionally .gz)`);
      files.push(...under.map((path) => withFormat({ kind: "local", path }, explicitFormat)));
      continue;
    }
    // A missing or unreadable file is reported when the run reaches it, like any other bad file.
    files.push(withFormat({ kind: "local", path: source }, explicitFormat));
  }
  return files;
}
