import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Strict local Mixpanel GDPR API v3.0 (docs/vendors/mixpanel-api.md §9, "GDPR deletion"), mounted
 * in the Mixpanel sandbox (`extraRoutes`) or a bare server: `POST {basePath}/data-deletions/v3.0/?token=`
 * with `Authorization: Bearer <oauth token>`, JSON `{distinct_ids: [1..1999 strings], compliance_type:
 * "GDPR"|"CCPA"}` → 201 `{"status":"ok","results":{"task_id"}}`; `GET …/v3.0/{task}?token=` →
 * `{"status":"ok","results":{"status"}}`; `DELETE …/v3.0/{task}?token=` cancels a PENDING or
 * STAGING task → 204 (https://docs.mixpanel.com/reference/delete-deletion; the task becomes
 * REVOKED), 405 once it has STARTED or ended (the privacy guide's answer), 404 for an unknown task;
 * a second call within 1 s → 429; wrong token 401. Tasks stay PENDING until `complete(taskId)`
 * (or `completeAll()`; `complete(taskId, "STARTED")` makes one no longer cancellable).
 */
export interface GdprTask {
  readonly taskId: string;
  readonly distinctIds: readonly string[];
  readonly compliance: string;
  status: string;
}

export interface GdprApiOptions {
  readonly oauthToken: string;
  readonly projectToken: string;
  readonly basePath?: string;
  readonly now?: () => number;
}

export function createGdprApi(options: GdprApiOptions) {
  const base = `${options.basePath ?? "/api/app"}/data-deletions/v3.0`;
  const tasks = new Map<string, GdprTask>();
  let lastCall = Number.NEGATIVE_INFINITY;
  const send = (response: ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  };
  return {
    tasks,
    complete(taskId: string, status = "SUCCESS") {
      const task = tasks.get(taskId);
      if (task) task.status = status;
    },
    completeAll() {
      for (const task of tasks.values()) task.status = "SUCCESS";
    },
    async handle(request: IncomingMessage, response: ServerResponse, url: URL, body: Buffer): Promise<boolean> {
      if (!url.pathname.startsWith(base)) return false;
      const now = (options.now ?? Date.now)();
      if (now - lastCall < 1000) {
        send(response, 429, { status: "error", error: "rate limit: 1 request per second" });
        return true;
      }
      lastCall = now;
      if (request.headers.authorization !== `Bearer ${options.oauthToken}`) {
        send(response, 401, { status: "error", error: "invalid OAuth token" });
        return true;
      }
      if (url.searchParams.get("token") !== options.projectToken) {
        send(response, 401, { status: "error", error: "unknown project token" });
        return true;
      }
      const rest = url.pathname.slice(base.length).replace(/^\/+/, "");
      if (request.method === "POST" && rest === "") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString("utf8"));
        } catch {
          send(response, 400, { status: "error", error: "body must be JSON" });
          return true;
        }
        const record = parsed !== null && typeof parsed === "object" ? (parsed as Record<string, unknown>) : {};
        const ids = record.distinct_ids;
        const compliance = record.compliance_type ?? "GDPR";
        if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1999 || !ids.every((id) => typeof id === "string" && id !== "")) {
          send(response, 400, { status: "error", error: "distinct_ids must hold 1 to 1999 ids" });
          return true;
        }
        if (compliance !== "GDPR" && compliance !== "CCPA") {
          send(response, 400, { status: "error", error: "compliance_type must be GDPR or CCPA" });
          return true;
        }
        const taskId = randomUUID();
        tasks.set(taskId, { taskId, distinctIds: ids.map(String), compliance, status: "PENDING" });
        send(response, 201, { status: "ok", results: { task_id: taskId } });
        return true;
      }
      if (request.method === "GET" && rest !== "") {
        const task = tasks.get(decodeURIComponent(rest));
        send(response, 200, { status: "ok", results: { status: task?.status ?? "NOT_FOUND" } });
        return true;
      }
      if (request.method === "DELETE" && rest !== "") {
        const task = tasks.get(decodeURIComponent(rest));
        if (!task) {
          send(response, 404, { status: "error", error: "task not found" });
        } else if (task.status !== "PENDING" && task.status !== "STAGING") {
          send(response, 405, { status: "error", error: `the deletion is ${task.status} and can no longer be cancelled` });
        } else {
          task.status = "REVOKED";
          response.writeHead(204);
          response.end();
        }
        return true;
      }
      send(response, 405, { status: "error", error: "method not allowed" });
      return true;
    },
  };
}
export type GdprApi = ReturnType<typeof createGdprApi>;
