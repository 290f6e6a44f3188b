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

/** Pipes `streams` in order; an error in any of them ends the last one with that error. */
function piped(streams: readonly [Readable, ...NodeJS.ReadWriteStream[]]): Readable {
  const last = streams[streams.length - 1] as Readable;
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
