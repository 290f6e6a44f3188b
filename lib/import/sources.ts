import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { glob, isDynamicPattern } from "tinyglobby";
import { type FileRef, type ImportFormat, formatFromName } from "./read-rows.js";

/**
 * The command line's sources as files, in a stable order: `-` is standard input, a glob
 * (`exports/*.ndjson.gz`) its matches, a folder every file in it (recursively) whose name
 * says a format, anything else the file itself. A source that matches nothing is an error
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

export async function resolveLocalSources(sources: readonly string[], explicitFormat: ImportFormat | undefined): Promise<ResolvedFile[]> {
  const files: ResolvedFile[] = [];
  for (const source of sources) {
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
