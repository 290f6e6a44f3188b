import { Readable, Transform } from "node:stream";
import type avro from "avsc";
import avroContainers from "avsc/lib/containers.js";
import avroTypes from "avsc/lib/types.js";
import Parser from "stream-json/Parser.js";
import Pick from "stream-json/filters/Pick.js";
import StreamArray from "stream-json/streamers/StreamArray.js";
import { narrowFloats } from "../sources/braze-avro.js";

/**
 * The document formats read element by element instead of whole, so a file of any size is
 * held one element (JSON) or one container block (Avro) at a time: a JSON array, or the
 * `events` array of a top-level object, through stream-json's tokenizer; a Braze Currents Avro
 * object-container file through avsc's block decoder, with each record's floats narrowed as
 * the Currents reader does.
 */

/**
 * Pipes `streams` in order; an error in any of them ends the last one with that error, and the
 * last one closing (read to the end, or left early by its reader) closes them all, so a file
 * left half-read releases its descriptor or connection.
 */
function piped(streams: readonly [Readable, ...NodeJS.ReadWriteStream[]]): Readable {
  const last = streams[streams.length - 1] as Readable;
  last.once("close", () => {
    for (const stream of streams) (stream as Readable).destroy();
  });
  for (let at = 0; at < streams.length - 1; at += 1) {
    const from = streams[at] as Readable;
    from.on("error", (error) => last.destroy(error));
    from.pipe(streams[at + 1] as NodeJS.WritableStream);
  }
  return last;
}

const JSON_WHITESPACE = new Set([0x20, 0x0a, 0x0d, 0x09]);

/** The first byte that is not JSON whitespace, and a stream that still yields every byte. */
async function firstSignificantByte(source: Readable): Promise<{ byte: number | undefined; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const held: Buffer[] = [];
  let byte: number | undefined;
  // Ends at the first chunk holding a byte other than whitespace, or at the end of the stream.
  while (byte === undefined) {
    const next = await iterator.next();
    if (next.done) break;
    held.push(next.value);
    byte = next.value.find((value) => !JSON_WHITESPACE.has(value));
  }
  const stream = Readable.from(
    (async function* () {
      yield* held;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  return { byte, stream };
}

const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const SHAPE = 'must be a JSON array or an object {"events": [...]}';

/** Each element of a JSON array document, or of the `events` array of an object document. */
export async function* jsonArrayElements(source: Readable): AsyncGenerator<unknown> {
  const { byte, stream } = await firstSignificantByte(source);
  if (byte === undefined) return;
  if (byte !== OPEN_ARRAY && byte !== OPEN_OBJECT) throw new Error(SHAPE);
  let sawEvents = false;
  const noteEvents = new Transform({
    objectMode: true,
    transform(token: { name: string }, _encoding, done) {
      if (!sawEvents && token.name !== "startArray") return done(new Error(`${SHAPE}; its "events" is not an array`));
      sawEvents = true;
      done(null, token);
    },
  });
  const elements =
    byte === OPEN_ARRAY
      ? piped([stream, Parser.parser(), StreamArray.streamArray()])
      : piped([stream, Parser.parser(), Pick.pick({ filter: (stack) => stack.length === 1 && stack[0] === "events", once: true }), noteEvents, StreamArray.streamArray()]);
  for await (const element of elements as AsyncIterable<{ key: number; value: unknown }>) yield element.value;
  if (byte === OPEN_OBJECT && !sawEvents) throw new Error(`${SHAPE}; this object has no "events" key`);
}

/**
 * Each record of an Avro object-container file, decoded with its embedded writer schema.
 * avsc ships the `null` and `deflate` codecs; any other fails with a message naming it.
 */
export async function* avroContainerRecords(source: Readable): AsyncGenerator<unknown> {
  const decoder = new avroContainers.streams.BlockDecoder();
  let writerType: avro.Type | undefined;
  // Emitted once, before any record, with the type built from the file's writer schema.
  decoder.on("metadata", (type: unknown) => {
    if (type instanceof avroTypes.Type) writerType = type;
  });
  for await (const record of piped([source, decoder]) as AsyncIterable<unknown>) yield writerType ? narrowFloats(record, writerType) : record;
}

/**
 * A line longer than this is refused, not held: Mixpanel takes at most 1 MB per event
 * (docs/vendors/mixpanel-api.md §3), so a longer NDJSON line can never be sent, and an
 * unbounded line would hold the whole file.
 */
export const MAX_LINE_BYTES = 16 * 2 ** 20;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export type NdjsonLine = { readonly text: string } | { readonly tooLong: number };

/**
 * The lines of a byte stream split at `\n` (a `\r` before it dropped), decoded as UTF-8 once
 * per line: cheaper per line than node:readline, which decodes every chunk and searches it
 * again as text. A UTF-8 byte-order mark before the first line is dropped.
 */
export async function* ndjsonLines(source: AsyncIterable<Buffer>, maxLineBytes = MAX_LINE_BYTES): AsyncGenerator<NdjsonLine> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  /** Bytes of an over-long line skipped so far, until its newline. */
  let skipping = -1;
  let first = true;
  const line = (bytes: Buffer, start: number, end: number): NdjsonLine => {
    let stop = end;
    if (stop > start && bytes[stop - 1] === CARRIAGE_RETURN) stop -= 1;
    let begin = start;
    if (first) {
      first = false;
      if (bytes[begin] === 0xef && bytes[begin + 1] === 0xbb && bytes[begin + 2] === 0xbf) begin += 3;
    }
    return { text: bytes.toString("utf8", begin, Math.max(begin, stop)) };
  };
  for await (const chunk of source) {
    let start = 0;
    for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, start)) {
      if (skipping >= 0) {
        yield { tooLong: skipping + at };
        first = false;
        skipping = -1;
      } else if (heldBytes > 0) {
        held.push(chunk.subarray(start, at));
        const joined = Buffer.concat(held);
        held = [];
        heldBytes = 0;
        yield line(joined, 0, joined.length);
      } else {
        yield line(chunk, start, at);
      }
      start = at + 1;
    }
    if (start >= chunk.length) continue;
    if (skipping >= 0) {
      skipping += chunk.length - start;
      continue;
    }
    held.push(chunk.subarray(start));
    heldBytes += chunk.length - start;
    if (heldBytes > maxLineBytes) {
      skipping = heldBytes;
      held = [];
      heldBytes = 0;
    }
  }
  if (skipping >= 0) yield { tooLong: skipping };
  else if (heldBytes > 0) {
    const joined = Buffer.concat(held);
    yield line(joined, 0, joined.length);
  }
}
