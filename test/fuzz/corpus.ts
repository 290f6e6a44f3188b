import fc from "fast-check";
import { CUSTOM_EVENT_TYPE, brazeEventLabel } from "../../lib/vocabulary/braze-labels.js";
import { MAX_JSON_DEPTH } from "../../lib/util/json.js";

/**
 * Hostile request bodies for the five intake routes, shared by the fuzz properties in
 * `npm test` (test/fuzz/intake-fuzz.test.ts) and by `npm run fuzz` (test/fuzz/run.ts).
 *
 * Bodies are built as JSON *text*, not through JSON.stringify, so they can hold what a
 * sender can send but JavaScript would never write: 1e400, integers beyond 2^53 as
 * digits, escaped lone surrogates, escaped surrogate pairs, duplicate keys, `__proto__`
 * keys, nesting tens of thousands of levels deep, invalid UTF-8.
 *
 * A mixed batch carries three kinds of items:
 *  - good: valid on every count, carrying a unique marker; the queued record must be
 *    found by that marker with the sender's values unchanged (compare with `sameJson`);
 *  - bad: invalid on a documented rule; must come back in `errors` or `dropped_items`;
 *  - hostile: anything; must be accounted for (queued, in `errors` or in `dropped_items`).
 */

export const ROUTES = ["/v1/events", "/v1/braze/currents", "/v1/adobe/events", "/v1/profiles", "/v1/groups"] as const;
export type Route = (typeof ROUTES)[number];

export interface CorpusOptions {
  /** Longest "huge" string value, in characters (the test stack allows bodies up to its cap). */
  readonly hugeMax: number;
  /** Event times are drawn up to this far in the past. */
  readonly nowMs: () => number;
}

// ---------------------------------------------------------------- text helpers

/** JSON string literal with every non-ASCII UTF-16 unit written as \uXXXX (surrogate pairs as two escapes). */
export function escapedJsonString(value: string): string {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const tricky = [
  "\u0000",
  "\u0001",
  "\u001f",
  "\u007f",
  "\uFFFE",
  "\uFFFF",
  "\uFFFD",
  "\uFEFF",
  "\u2028",
  "\u2029",
  "\uD800",
  "\uDBFF",
  "\uDC00",
  "\uDFFF",
  "🛒",
  "😀",
  "𝄞",
  "𠜎",
  "\u{10FFFF}",
  "é",
  "中",
  "\"",
  "\\",
  "\n",
  "\t",
  "<script>",
  "%s",
  "${x}",
  "$&",
];

/** One UTF-16 "character": lone surrogates, non-BMP, NUL, U+FFFE/U+FFFF and friends, or plain text. */
const hostileUnit = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...tricky) },
  { weight: 4, arbitrary: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789 -_.".split("")) },
  { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)) },
);

export const hostileString = fc.string({ unit: hostileUnit, maxLength: 24 });

/** A hostile string as JSON text: raw (UTF-8 in the body) or fully \u-escaped. */
function stringText(value: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(value, fc.boolean()).map(([text, escape]) => (escape ? escapedJsonString(text) : JSON.stringify(text)));
}

const NUMBER_TOKENS = [
  "1e400",
  "-1e400",
  "1E-400",
  "12345678901234567890",
  "-12345678901234567890",
  "9007199254740993",
  "9007199254740992",
  "-0",
  "0.1e1",
  "1.7976931348623157e308",
  "5e-324",
  "123456789012345678901234567890.5",
];

const numberText = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.constantFrom(...NUMBER_TOKENS),
);

/** Finite numbers, integers beyond 2^53 included (JSON.parse rounds them; the record must carry the rounded value). */
const finiteNumberText = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.constantFrom("12345678901234567890", "9007199254740993", "-0", "0.1e1", "5e-324", "1.7976931348623157e308"),
);

const HOSTILE_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "__defineGetter__", ""];
const SAFE_ODD_KEYS = ["constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "__defineGetter__", "__proto", "_proto__", "__PROTO__", "then"];

/**
 * Names the routes give a meaning (Mixpanel's reserved properties, Braze fields the
 * connector renames or drops, Adobe's token): a good item never uses them as ordinary
 * property names, so its values can be compared one for one.
 */
const RESERVED_NAMES = new Set([
  "__proto__",
  "time",
  "distinct_id",
  "$insert_id",
  "insert_id",
  "ip",
  "token",
  "$token",
  "name",
  "custom_properties",
  "purchase_properties",
  "device_model",
  "os_version",
  "content_card_id",
  "user_id",
  "timezone",
  "external_user_id",
  "device_id",
  "$partner_id",
  "event_type",
  "id",
  "user",
  "properties",
  "event",
  "$device",
  "$os",
  "card_id",
  "$user_id",
  "$device_id",
]);

export const goodKey = fc
  .oneof({ weight: 1, arbitrary: fc.constantFrom(...SAFE_ODD_KEYS) }, { weight: 4, arbitrary: hostileString })
  .filter((key) => !RESERVED_NAMES.has(key));

const hostileKey = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_KEYS, ...RESERVED_NAMES) },
  { weight: 3, arbitrary: hostileString },
);

function objectText(entries: readonly (readonly [string, string])[]): string {
  return `{${entries.map(([key, value]) => `${key}:${value}`).join(",")}}`;
}

/**
 * How deep JSON.stringify can nest arrays here before it throws RangeError (it recurses; the
 * limit depends on the stack). Values nested just around it are the hardest case for anything
 * that serializes a rejected payload inside a larger object.
 */
let stringifyLimit: number | undefined;

export function jsonStringifyDepthLimit(): number {
  stringifyLimit ??= searchStringifyDepthLimit();
  return stringifyLimit;
}

function searchStringifyDepthLimit(): number {
  let fits = 1;
  let fails = 200_000;
  while (fails - fits > 1) {
    const depth = Math.floor((fits + fails) / 2);
    try {
      JSON.stringify(JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`));
      fits = depth;
    } catch {
      fails = depth;
    }
  }
  return fits;
}


/**
 * Nesting depths for hostile values: past Mixpanel's limits, yet with the whole body within
 * MAX_JSON_DEPTH (a few levels sit around a value: the batch, the item, `properties`), so the
 * item is refused on its own; deeper bodies are refused whole (hostileBodyBytes).
 */
function deepDepth(min: number): fc.Arbitrary<number> {
  return fc.integer({ min, max: MAX_JSON_DEPTH - 8 });
}

/** Containers nested `depth` levels deep, of arrays or objects. */
export function deepText(depth: number, kind: "array" | "object"): string {
  return kind === "array" ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

function hugeString(options: CorpusOptions): fc.Arbitrary<string> {
  const sizes = [70_000, 262_000, options.hugeMax].filter((size) => size <= options.hugeMax);
  return fc.tuple(fc.constantFrom(...sizes), fc.constantFrom("x", "é", "🛒", "\u0000")).map(([size, unit]) =>
    JSON.stringify(unit.repeat(Math.max(1, Math.floor(size / unit.length)))),
  );
}

/** Any JSON value as text, hostile in every way a sender could be. */
export function hostileValueText(options: CorpusOptions): fc.Arbitrary<string> {
  const { value } = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      { weight: 3, arbitrary: stringText(hostileString) },
      { weight: 3, arbitrary: numberText },
      { weight: 1, arbitrary: fc.constantFrom("true", "false", "null") },
      { weight: 2, arbitrary: fc.array(tie("value"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`) },
      {
        weight: 2,
        arbitrary: fc
          .array(fc.tuple(stringText(hostileKey), tie("value")), { maxLength: 4 })
          .map((entries) => objectText(entries)),
      },
    ),
  }));
  return fc.oneof(
    { weight: 30, arbitrary: value },
    { weight: 1, arbitrary: fc.tuple(deepDepth(17), fc.constantFrom("array" as const, "object" as const)).map(([depth, kind]) => deepText(depth, kind)) },
    { weight: 1, arbitrary: hugeString(options) },
  );
}

/** A value Mixpanel accepts inside an event or a profile: containers ≤ 2 levels, < 255 items, finite numbers. */
const goodValueText: fc.Arbitrary<string> = fc.letrec<{ value: string; leaf: string }>((tie) => ({
  leaf: fc.oneof(
    { weight: 4, arbitrary: stringText(hostileString) },
    { weight: 2, arbitrary: finiteNumberText },
    { weight: 1, arbitrary: fc.constantFrom("true", "false", "null") },
  ),
  value: fc.oneof(
    { weight: 6, arbitrary: tie("leaf") },
    { weight: 1, arbitrary: fc.array(tie("leaf"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`) },
    {
      weight: 1,
      arbitrary: fc
        .uniqueArray(fc.tuple(goodKey, tie("leaf")), { maxLength: 4, selector: ([key]) => key })
        .map((entries) => objectText(entries.map(([key, value]) => [JSON.stringify(key), value]))),
    },
  ),
})).value;

function goodProperties(): fc.Arbitrary<[string, string][]> {
  return fc
    .uniqueArray(fc.tuple(goodKey, goodValueText), { maxLength: 6, selector: ([key]) => key })
    .map((entries) => entries.map(([key, value]): [string, string] => [JSON.stringify(key), value]));
}

// ---------------------------------------------------------------- items per route

export type ItemKind = "good" | "bad" | "hostile";

export interface FuzzItem {
  readonly kind: ItemKind;
  /** The item as JSON text. */
  readonly text: string;
  /** Good items: the marker the queued record is found by ($insert_id, or the update's id). */
  readonly marker?: string;
}

let markerCounter = 0;
/** Unique per generated item, valid as a Mixpanel `$insert_id` (≤ 36 of [A-Za-z0-9-]). */
function nextMarker(): string {
  markerCounter += 1;
  return `fz-${process.pid.toString(36)}-${markerCounter.toString(36)}`;
}

/** A good item's time: seconds, milliseconds or a numeric string, within the last 5 days. */
function goodTime(options: CorpusOptions): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: 0, max: 5 * 86_400_000 }), fc.constantFrom("s", "ms", "string")).map(([ago, unit]) => {
    const ms = options.nowMs() - 60_000 - ago;
    if (unit === "ms") return String(ms);
    const seconds = Math.floor(ms / 1000);
    return unit === "s" ? String(seconds) : JSON.stringify(String(seconds));
  });
}

const goodName = fc
  .tuple(fc.constantFrom("Signed Up", "🛒 Checkout", "Zahlung ✓", "a", "x\u0000y"), hostileString)
  .map(([head, tail]) => `${head} ${tail}`)
  .filter((name) => name.trim() !== "" && !["$identify", "$create_alias", "$merge"].includes(name));

const goodId = fc.tuple(fc.constantFrom("user", "ü-🛒", "42"), hostileString).map(([head, tail]) => `${head}-${tail}`);

function withMarker(build: (marker: string) => fc.Arbitrary<string>): fc.Arbitrary<FuzzItem> {
  return fc.constant(null).chain(() => {
    const marker = nextMarker();
    return build(marker).map((text): FuzzItem => ({ kind: "good", text, marker }));
  });
}

function good(route: Route, options: CorpusOptions): fc.Arbitrary<FuzzItem> {
  switch (route) {
    case "/v1/events":
      return withMarker((marker) =>
        fc.tuple(goodName, goodId, goodTime(options), goodProperties()).map(([name, id, time, props]) =>
          objectText([
            ['"event"', JSON.stringify(name)],
            ['"properties"', objectText([['"distinct_id"', JSON.stringify(id)], ['"time"', time], ['"$insert_id"', JSON.stringify(marker)], ...props])],
          ]),
        ),
      );
    case "/v1/adobe/events":
      return withMarker((marker) =>
        fc.tuple(goodName, goodId, goodTime(options), goodProperties(), goodProperties()).map(([name, id, time, props, custom]) =>
          objectText([
            ['"event"', JSON.stringify(name)],
            ['"properties"', objectText([['"distinct_id"', JSON.stringify(id)], ['"time"', time], ['"$insert_id"', JSON.stringify(marker)], ...props])],
            ['"custom_properties"', objectText(custom)],
          ]),
        ),
      );
    case "/v1/braze/currents":
      return withMarker((marker) =>
        fc
          .tuple(
            fc.constantFrom("users.behaviors.CustomEvent", "users.behaviors.Purchase", "users.behaviors.app.SessionStart", "users.messages.email.Send"),
            goodName,
            goodId,
            goodTime(options),
            goodProperties(),
          )
          .map(([eventType, name, id, time, props]) => {
            const inner: [string, string][] =
              eventType === "users.behaviors.CustomEvent"
                ? [['"name"', JSON.stringify(name)], ['"custom_properties"', objectText(props)]]
                : eventType === "users.behaviors.Purchase"
                  ? [['"product_id"', JSON.stringify(name)], ['"purchase_properties"', objectText(props)]]
                  : props;
            return objectText([
              ['"event_type"', JSON.stringify(eventType)],
              ['"id"', JSON.stringify(marker)],
              ['"time"', time],
              ['"user"', objectText([['"external_user_id"', JSON.stringify(id)]])],
              ['"properties"', objectText(inner)],
            ]);
          }),
      );
    case "/v1/profiles":
      return withMarker((marker) =>
        fc.tuple(fc.constantFrom("$set", "$set_once"), goodProperties(), hostileString).map(([op, props, tail]) =>
          objectText([['"$distinct_id"', JSON.stringify(`${marker}-${tail}`)], [JSON.stringify(op), objectText(props)]]),
        ),
      ).map((item) => ({ ...item, marker: JSON.parse(item.text)["$distinct_id"] }));
    case "/v1/groups":
      return withMarker((marker) =>
        fc.tuple(fc.constantFrom("$set", "$set_once"), goodProperties(), hostileString).map(([op, props, tail]) =>
          objectText([['"$group_key"', '"company"'], ['"$group_id"', JSON.stringify(`${marker}-${tail}`)], [JSON.stringify(op), objectText(props)]]),
        ),
      ).map((item) => ({ ...item, marker: JSON.parse(item.text)["$group_id"] }));
  }
}

/** Items that break a documented rule; each must come back in `errors` or `dropped_items`. */
function bad(route: Route, options: CorpusOptions): fc.Arbitrary<string> {
  const nowS = () => Math.floor(options.nowMs() / 1000);
  const deep = fc.tuple(deepDepth(17), fc.constantFrom("array" as const, "object" as const)).map(([depth, kind]) => deepText(depth, kind));
  const notAnObject = fc.constantFrom("1", '"event"', "null", "true", "[]", "[1,2]", "1e400");
  switch (route) {
    case "/v1/events":
    case "/v1/adobe/events": {
      const event = (props: string) => `{"event":"E","properties":{${props}}}`;
      return fc.oneof(
        notAnObject,
        fc.constantFrom(
          '{"properties":{"distinct_id":"u","time":1700000000}}',
          '{"event":1,"properties":{"distinct_id":"u","time":1700000000}}',
          '{"event":"   ","properties":{"distinct_id":"u","time":1700000000}}',
          event('"distinct_id":"u","time":"yesterday"'),
          event('"distinct_id":"u","time":1e400'),
          event('"distinct_id":"u","time":1'),
          event(`"distinct_id":"u","time":${nowS() + 86_400 * 30}`),
          event('"distinct_id":"null","time":1700000000'),
          event('"distinct_id":"Anonymous","time":1700000000'),
          event('"distinct_id":{"id":1},"time":1700000000'),
          event('"distinct_id":12345678901234567890,"time":1700000000'),
          event('"distinct_id":"u","time":1700000000,"__proto__":{"polluted":true}'),
          event('"distinct_id":"u","time":1700000000,"x":{"a":{"b":{"c":{"d":1}}}}'),
          event('"distinct_id":"u","time":1700000000,"price":1e400'),
          event('"distinct_id":"u","time":1700000000,"list":[1,-1e400]'),
          event('"distinct_id":1e400,"time":1700000000'),
        ).map((text) => text.replace(/1700000000/g, String(nowS() - 100))),
        deep.map((value) => event(`"distinct_id":"u","time":${nowS() - 100},"deep":${value}`)),
        fc.constant(null).map(() => event(`"distinct_id":"u","time":${nowS() - 100},${Array.from({ length: 300 }, (_, i) => `"p${i}":${i}`).join(",")}`)),
      );
    }
    case "/v1/braze/currents": {
      const braze = (eventType: string, extra: string) =>
        `{"event_type":${JSON.stringify(eventType)},"id":"b-1","time":${nowS() - 100},"user":{"external_user_id":"u-1"},"properties":{${extra}}}`;
      return fc.oneof(
        notAnObject,
        fc.constantFrom(
          braze("users.behaviors.NotAType", ""),
          braze("users.behaviors.CustomEvent", ""),
          braze("users.behaviors.CustomEvent", '"name":"   "'),
          braze("users.behaviors.CustomEvent", '"name":"N","custom_properties":"{not json"'),
          braze("users.behaviors.CustomEvent", '"name":"N","custom_properties":{"__proto__":{"x":1}}'),
          braze("users.behaviors.CustomEvent", '"name":"N","custom_properties":"{\\"__proto__\\":{\\"x\\":1}}"'),
          '{"event_type":"users.behaviors.app.SessionStart","id":"b-2","time":1700000000}',
          '{"event_type":"users.behaviors.app.SessionStart","id":"b-3","time":"soon","user":{"external_user_id":"u-1"}}',
          '{"event_type":"users.behaviors.app.SessionStart","id":"b-4","time":1e400,"user":{"external_user_id":"u-1"}}',
          '{"event_type":42,"id":"b-5","time":1700000000,"user":{"external_user_id":"u-1"}}',
          braze("users.behaviors.CustomEvent", '"name":"N","custom_properties":{"amount":1e400}'),
          braze("users.behaviors.app.SessionStart", '"value":-1e400'),
        ),
        deep.map((value) => braze("users.behaviors.CustomEvent", `"name":"N","custom_properties":{"deep":${value}}`)),
      );
    }
    case "/v1/profiles":
    case "/v1/groups": {
      const head = route === "/v1/profiles" ? '"$distinct_id":"p-1"' : '"$group_key":"company","$group_id":"g-1"';
      return fc.oneof(
        notAnObject,
        fc.constantFrom(
          `{${head}}`,
          `{${head},"$set":{"a":1},"$unset":["b"]}`,
          `{${head},"plan":"pro"}`,
          `{${head},"$set":[1,2]}`,
          `{${head},"$set":"text"}`,
          `{${head},"$set":{"__proto__":{"x":1}}}`,
          `{${head},"$unset":"a"}`,
          `{${head},"$set":{"score":1e400}}`,
          `{${head},"$union":{"scores":[1,1e400]}}`,
          route === "/v1/profiles" ? '{"$distinct_id":"null","$set":{"a":1}}' : '{"$group_key":"company","$group_id":12345678901234567890,"$set":{"a":1}}',
          route === "/v1/profiles" ? '{"$distinct_id":"   ","$set":{"a":1}}' : '{"$group_key":"company","$group_id":"g-1","$add":{"a":1}}',
          route === "/v1/profiles" ? '{"$distinct_id":"p-1","$add":{"a":"1"}}' : '{"$group_id":"g-1","$set":{"a":1}}',
          route === "/v1/profiles" ? '{"$distinct_id":12345678901234567890,"$set":{"a":1}}' : '{"$group_key":"   ","$group_id":"g-1","$set":{"a":1}}',
        ),
        deep.map((value) => `{${head},"$set":{"deep":${value}}}`),
      );
    }
  }
}

/** An item shaped roughly like the route's, with hostile values anywhere; any outcome is fine if accounted for. */
function hostile(route: Route, options: CorpusOptions): fc.Arbitrary<string> {
  const any = hostileValueText(options);
  const props = fc.array(fc.tuple(stringText(hostileKey), any), { maxLength: 5 });
  const time = fc.oneof(any, goodTime(options));
  const id = fc.oneof(any, stringText(hostileString));
  switch (route) {
    case "/v1/events":
    case "/v1/adobe/events":
      return fc.oneof(
        { weight: 1, arbitrary: any },
        {
          weight: 4,
          arbitrary: fc.tuple(fc.oneof(any, stringText(hostileString)), id, time, props, any).map(([event, distinct, when, rest, custom]) =>
            objectText([
              ['"event"', event],
              ['"properties"', objectText([['"distinct_id"', distinct], ['"time"', when], ...rest])],
              ...(route === "/v1/adobe/events" ? [['"custom_properties"', custom] as [string, string]] : []),
            ]),
          ),
        },
      );
    case "/v1/braze/currents":
      return fc.oneof(
        { weight: 1, arbitrary: any },
        {
          weight: 4,
          arbitrary: fc
            .tuple(fc.oneof(fc.constantFrom('"users.behaviors.CustomEvent"', '"users.behaviors.Purchase"', '"users.messages.email.Open"'), any), id, time, props, any)
            .map(([eventType, user, when, rest, custom]) =>
              objectText([
                ['"event_type"', eventType],
                ['"id"', user],
                ['"time"', when],
                ['"user"', objectText([['"external_user_id"', user], ['"device_id"', custom]])],
                ['"properties"', objectText([['"name"', user], ['"custom_properties"', custom], ...rest])],
              ]),
            ),
        },
      );
    case "/v1/profiles":
    case "/v1/groups":
      return fc.oneof(
        { weight: 1, arbitrary: any },
        {
          weight: 4,
          arbitrary: fc
            .tuple(id, fc.constantFrom("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete", "$bogus"), any, props)
            .map(([who, op, value, rest]) =>
              objectText([
                ...(route === "/v1/profiles" ? [['"$distinct_id"', who] as [string, string]] : [['"$group_key"', '"company"'] as [string, string], ['"$group_id"', who] as [string, string]]),
                [JSON.stringify(op), value],
                ...rest.slice(0, 1),
              ]),
            ),
        },
      );
  }
}

export function fuzzItem(route: Route, options: CorpusOptions): fc.Arbitrary<FuzzItem> {
  return fc.oneof(
    { weight: 4, arbitrary: good(route, options) },
    { weight: 2, arbitrary: bad(route, options).map((text): FuzzItem => ({ kind: "bad", text })) },
    { weight: 3, arbitrary: hostile(route, options).map((text): FuzzItem => ({ kind: "hostile", text })) },
  );
}

/** A batch in the route's envelope (either of its documented forms). */
export function wrapBatch(route: Route, items: readonly string[], form: number): string {
  const list = `[${items.join(",")}]`;
  switch (route) {
    case "/v1/braze/currents":
      return `{"events":${list}}`;
    case "/v1/events":
      return form % 2 === 0 ? list : `{"events":${list}}`;
    case "/v1/profiles":
    case "/v1/groups":
      return form % 2 === 0 ? list : `{"updates":${list}}`;
    case "/v1/adobe/events":
      return list;
  }
}

export interface MixedBatch {
  readonly route: Route;
  readonly items: readonly FuzzItem[];
  readonly body: Buffer;
}

/** How fast-check prints a body in a counterexample: its start and its size, not every byte. */
export function describeBody(body: Buffer): string {
  const text = body.toString("utf8");
  return `${body.length} bytes: ${text.length > 600 ? `${text.slice(0, 600)}…` : text}`;
}

function printable<T extends { readonly body: Buffer }>(value: T): T {
  return Object.assign(value, { [fc.toStringMethod]: () => describeBody(value.body) });
}

export function mixedBatch(route: Route, options: CorpusOptions): fc.Arbitrary<MixedBatch> {
  return fc.tuple(fc.array(fuzzItem(route, options), { minLength: 1, maxLength: 10 }), fc.nat(1)).map(([items, form]) =>
    printable({ route, items, body: Buffer.from(wrapBatch(route, items.map((item) => item.text), form)) }),
  );
}

/** A whole body that may be anything at all: not JSON, invalid UTF-8, the wrong envelope, empty. */
export function hostileBody(route: Route, options: CorpusOptions): fc.Arbitrary<{ readonly body: Buffer }> {
  return hostileBodyBytes(route, options).map((body) => printable({ body }));
}

function hostileBodyBytes(route: Route, options: CorpusOptions): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 4, arbitrary: hostileValueText(options).map((text) => Buffer.from(text)) },
    { weight: 2, arbitrary: fc.array(hostile(route, options), { maxLength: 4 }).map((items) => Buffer.from(wrapBatch(route, items, 0))) },
    {
      weight: 1,
      // Nested past MAX_JSON_DEPTH: refused whole (400 too_deep) before it is parsed.
      arbitrary: fc
        .tuple(fc.oneof(fc.integer({ min: MAX_JSON_DEPTH + 1, max: 20_000 }), fc.constant(jsonStringifyDepthLimit())), fc.constantFrom("array" as const, "object" as const))
        .map(([depth, kind]) => Buffer.from(wrapBatch(route, [deepText(depth, kind)], 0))),
    },
    { weight: 1, arbitrary: fc.constantFrom("", " ", "{", "[1,", "nul", "\"\\ud800", "[]", "{}", '{"events":null}', "\u0000").map((text) => Buffer.from(text)) },
    {
      weight: 1,
      // Invalid UTF-8: a lone surrogate encoded raw, a truncated sequence, an overlong NUL.
      arbitrary: fc.constantFrom([0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x9b], [0xc0, 0x80], [0xff]).map((bytes) =>
        Buffer.concat([Buffer.from(wrapBatch(route, ['{"event":"'], 0).replace(/]}?$/, "")), Buffer.from(bytes), Buffer.from('"}]')]),
      ),
    },
  );
}

/**
 * A body whose size is within `spread` bytes of `cap`: one good item and one whose padding
 * string is sized to land there. Over the cap the answer must be 413.
 */
export function nearCapBody(route: Route, options: CorpusOptions, cap: number): fc.Arbitrary<MixedBatch> {
  return fc.tuple(good(route, options), fc.integer({ min: -64, max: 64 }), fc.constantFrom("x", "é", "🛒")).map(([item, offset, unit]) => {
    const pad = (length: number) => {
      const padding = JSON.stringify(unit.repeat(Math.max(0, Math.floor(length / Buffer.byteLength(unit)))));
      switch (route) {
        case "/v1/profiles":
          return `{"$distinct_id":"pad-1","$set":{"pad":${padding}}}`;
        case "/v1/groups":
          return `{"$group_key":"company","$group_id":"pad-1","$set":{"pad":${padding}}}`;
        case "/v1/braze/currents":
          return `{"event_type":"users.behaviors.CustomEvent","time":1,"user":{"external_user_id":"pad"},"properties":{"name":"Pad","custom_properties":{"pad":${padding}}}}`;
        default:
          return `{"event":"Pad","properties":{"distinct_id":"pad","time":1,"pad":${padding}}}`;
      }
    };
    const base = Buffer.byteLength(wrapBatch(route, [item.text, pad(0)], 0));
    const body = Buffer.from(wrapBatch(route, [item.text, pad(cap + offset - base)], 0));
    // The pad item (time 1 / a single pad property) is either queued or rejected; both are accounted for.
    return printable({ route, items: [item, { kind: "hostile" as const, text: pad(0) }], body });
  });
}

/** Equality of JSON values as Mixpanel would read them: -0 equals 0, but Infinity never equals null. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number") return a === b;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  const aEntries = Object.entries(a);
  const bValues = new Map(Object.entries(b));
  if (aEntries.length !== bValues.size) return false;
  return aEntries.every(([key, value]) => bValues.has(key) && sameJson(value, bValues.get(key)));
}

// ---------------------------------------------------------------- oracles

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function field(value: unknown, key: string): unknown {
  return isRecord(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

function timeMs(value: unknown): number {
  const numeric = typeof value === "string" ? Number(value) : Number(value);
  return Math.trunc(numeric < 1e11 ? numeric * 1000 : numeric);
}

/** Mappers trim some names and ids (zod `.trim()`); either spelling is the sender's value. */
function sameText(actual: unknown, expected: unknown): boolean {
  return typeof actual === "string" && typeof expected === "string" && (actual === expected || actual === expected.trim());
}

/** The record a good item must have become, found by its marker, or undefined. */
export function findGoodRecord(route: Route, item: FuzzItem, records: readonly unknown[]): unknown {
  const marker = item.marker ?? "";
  return records.find((record) => {
    if (route === "/v1/profiles") return sameText(field(record, "$distinct_id"), marker);
    if (route === "/v1/groups") return sameText(field(record, "$group_id"), marker);
    return field(field(record, "properties"), "$insert_id") === marker;
  });
}

/**
 * Why the queued record does not carry the good item's values unchanged, or undefined when it
 * does. `item` is the item as the relay parsed it (JSON.parse of its text).
 */
export function goodRecordMismatch(route: Route, item: unknown, record: unknown): string | undefined {
  const problems: string[] = [];
  const expectEqual = (what: string, actual: unknown, expected: unknown) => {
    if (!sameJson(actual, expected)) problems.push(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  };
  const expectProperties = (target: unknown, source: unknown, prefix: string) => {
    if (!isRecord(source)) return;
    for (const [key, value] of Object.entries(source)) expectEqual(`${prefix}${key}`, field(target, `${prefix}${key}`), value);
  };
  const properties = field(record, "properties");
  switch (route) {
    case "/v1/events":
    case "/v1/adobe/events": {
      const sent = field(item, "properties");
      if (!sameText(field(record, "event"), field(item, "event"))) problems.push(`event name ${JSON.stringify(field(record, "event"))}`);
      if (field(properties, "distinct_id") !== field(sent, "distinct_id")) problems.push("distinct_id changed");
      expectEqual("time", field(properties, "time"), timeMs(field(sent, "time")));
      const custom = field(item, "custom_properties");
      for (const [key, value] of Object.entries(isRecord(sent) ? sent : {})) {
        if (key === "time" || (isRecord(custom) && Object.hasOwn(custom, key))) continue;
        expectEqual(key, field(properties, key), value);
      }
      expectProperties(properties, custom, "");
      break;
    }
    case "/v1/braze/currents": {
      const sent = field(item, "properties");
      const eventType = field(item, "event_type");
      if (field(properties, "distinct_id") !== field(field(item, "user"), "external_user_id")) problems.push("distinct_id is not external_user_id");
      expectEqual("time", field(properties, "time"), timeMs(field(item, "time")));
      if (eventType === CUSTOM_EVENT_TYPE) {
        const name = field(sent, "name");
        if (typeof name !== "string" || field(record, "event") !== brazeEventLabel(CUSTOM_EVENT_TYPE, name)) {
          problems.push(`event name ${JSON.stringify(field(record, "event"))}`);
        }
        expectProperties(properties, field(sent, "custom_properties"), "[Custom event property] ");
      } else if (eventType === "users.behaviors.Purchase") {
        expectProperties(properties, field(sent, "purchase_properties"), "[Purchase property] ");
      } else {
        expectProperties(properties, sent, "");
      }
      break;
    }
    case "/v1/profiles":
    case "/v1/groups": {
      const op = isRecord(item) ? Object.keys(item).find((key) => key.startsWith("$set")) : undefined;
      if (op === undefined) return "good update without an operation";
      expectEqual(op, field(record, op), field(item, op));
      break;
    }
  }
  return problems.length > 0 ? problems.join("; ") : undefined;
}

export interface IntakeAnswer {
  readonly accepted: number;
  readonly rejected: number;
  readonly dropped: number;
  readonly errorIndexes: number[];
  readonly droppedIndexes: number[];
}

function indexes(value: unknown): number[] {
  return Array.isArray(value) ? value.map((entry) => Number(field(entry, "index"))) : [];
}

/** The 2xx answer's counts, or why it is not the documented shape. */
export function readAnswer(body: unknown): IntakeAnswer | string {
  const accepted = field(body, "accepted");
  const rejected = field(body, "rejected");
  const dropped = field(body, "dropped");
  if (typeof accepted !== "number" || typeof rejected !== "number" || typeof dropped !== "number" || !Array.isArray(field(body, "errors"))) {
    return `2xx body is not {accepted, rejected, dropped, errors}: ${JSON.stringify(body).slice(0, 300)}`;
  }
  return { accepted, rejected, dropped, errorIndexes: indexes(field(body, "errors")), droppedIndexes: indexes(field(body, "dropped_items")) };
}

/**
 * What the 2xx answer to a mixed batch gets wrong, item by item: every item counted once,
 * every bad item in `errors` or `dropped_items`, no good item there.
 */
export function accountingProblems(items: readonly FuzzItem[], answer: IntakeAnswer): string[] {
  const problems: string[] = [];
  const { accepted, rejected, dropped, errorIndexes, droppedIndexes } = answer;
  if (accepted + rejected + dropped !== items.length) problems.push(`accepted ${accepted} + rejected ${rejected} + dropped ${dropped} ≠ ${items.length} items`);
  if (errorIndexes.length !== rejected) problems.push(`${errorIndexes.length} errors listed for rejected ${rejected}`);
  if (droppedIndexes.length !== dropped) problems.push(`${droppedIndexes.length} dropped_items listed for dropped ${dropped}`);
  const refused = [...errorIndexes, ...droppedIndexes];
  if (new Set(refused).size !== refused.length) problems.push(`an index is listed twice: ${refused.join(",")}`);
  if (refused.some((index) => !Number.isInteger(index) || index < 0 || index >= items.length)) problems.push(`index out of range: ${refused.join(",")}`);
  items.forEach((item, index) => {
    if (item.kind === "bad" && !refused.includes(index)) problems.push(`bad item ${index} was not refused: ${item.text.slice(0, 200)}`);
    if (item.kind === "good" && refused.includes(index)) problems.push(`good item ${index} was refused: ${item.text.slice(0, 200)}`);
  });
  return problems;
}
