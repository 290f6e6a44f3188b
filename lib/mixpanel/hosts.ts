import type { Residency } from "../config/stage.js";

/**
 * Hosts per data residency (docs/vendors/mixpanel-api.md §1). Residency is per
 * project and never falls back to the US host: EU forwarding ended 2026-07-01.
 */
const INGESTION_HOSTS: Record<Residency, string> = {
  us: "https://api.mixpanel.com",
  eu: "https://api-eu.mixpanel.com",
  in: "https://api-in.mixpanel.com",
};

const QUERY_BASES: Record<Residency, string> = {
  us: "https://mixpanel.com/api/query",
  eu: "https://eu.mixpanel.com/api/query",
  in: "https://in.mixpanel.com/api/query",
};

/**
 * The raw event export (`GET {base}/export`) has hosts of its own, `data`, `data-eu`, `data-in`
 * (https://docs.mixpanel.com/reference/raw-event-export, docs/vendors/mixpanel-api.md "Raw event export").
 */
const EXPORT_BASES: Record<Residency, string> = {
  us: "https://data.mixpanel.com/api/2.0",
  eu: "https://data-eu.mixpanel.com/api/2.0",
  in: "https://data-in.mixpanel.com/api/2.0",
};

export function ingestionBaseUrl(residency: Residency, override?: string): string {
  return (override ?? INGESTION_HOSTS[residency]).replace(/\/+$/, "");
}

export function queryBaseUrl(residency: Residency, override?: string): string {
  return (override ?? QUERY_BASES[residency]).replace(/\/+$/, "");
}

export function exportBaseUrl(residency: Residency, override?: string): string {
  return (override ?? EXPORT_BASES[residency]).replace(/\/+$/, "");
}
