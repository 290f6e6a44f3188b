/**
 * Metric name (keep it stable for alarms): surrogate halves the intake received without their
 * partner and turned into U+FFFD (lib/util/text.ts decodeUtf8). Counted, because that is the
 * one place the intake changes text a sender sent.
 */
export const LONE_SURROGATES_METRIC = "IntakeLoneSurrogates";
