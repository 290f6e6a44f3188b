import { CompaniesClient } from "@getbrevo/brevo/companies";
import { ContactsClient } from "@getbrevo/brevo/contacts";
import { EventClient } from "@getbrevo/brevo/event";
import { ProcessClient } from "@getbrevo/brevo/process";

/**
 * The Brevo operations the relay uses, made by Brevo's official SDK (`@getbrevo/brevo`, generated
 * from Brevo's API spec). Loaded with `import()` by lib/brevo/client.ts at the first Brevo call, so
 * a cold start that makes none (and the cohort functions, which share lib/brevo) does not read it.
 *
 * The relay's send rules are the SDK's own options (docs/vendors/brevo-connector.md "The vendor's
 * client"): `maxRetries: 0` (the SDK retries 408/429/5xx by default; the relay decides retries and
 * rate-limit waits itself), `timeoutInSeconds`, and `fetch`, through which every request goes (the
 * caller's fetch never follows redirects and applies the address policy).
 */
export interface BrevoSdkOptions {
  readonly baseUrl: string;
  readonly apiKey: () => Promise<string>;
  readonly timeoutMs: number;
  readonly fetch: typeof fetch;
}

export interface BrevoRawAnswer {
  readonly data: unknown;
  readonly rawResponse: { readonly status: number; readonly headers: Headers };
}

/** A parsed `path?query` call routed to its SDK operation. */
export interface BrevoOperationCall {
  readonly method: string;
  /** Path segments below the base URL, decoded (`/contacts/a%40b.c` → ["contacts", "a@b.c"]). */
  readonly segments: readonly string[];
  readonly query: Record<string, string>;
  readonly body: unknown;
}

export type BrevoSdk = (call: BrevoOperationCall) => Promise<BrevoRawAnswer> | undefined;

// The relay's bodies are built by its mappers (lib/brevo/*.ts) from Brevo's documented shapes; the
// SDK's request types describe the same JSON, so each body is handed over as that request's type.
type Body<T> = T;
const body = <T>(value: unknown): Body<T> => value as T;
const record = (value: unknown): Record<string, unknown> => (value !== null && typeof value === "object" && !Array.isArray(value) ? Object.fromEntries(Object.entries(value)) : {});

export function createBrevoSdk(options: BrevoSdkOptions): BrevoSdk {
  const clientOptions = {
    baseUrl: options.baseUrl,
    apiKey: options.apiKey,
    maxRetries: 0,
    timeoutInSeconds: options.timeoutMs / 1000,
    fetch: options.fetch,
  };
  const events = new EventClient(clientOptions);
  const contacts = new ContactsClient(clientOptions);
  const companies = new CompaniesClient(clientOptions);
  const processes = new ProcessClient(clientOptions);

  return ({ method, segments, query, body: payload }) => {
    const requestOptions = { queryParams: query };
    const [root, second, third, fourth, fifth] = segments;
    const n = segments.length;
    const identifierType = query.identifierType as never;
    const contactQuery = { queryParams: Object.fromEntries(Object.entries(query).filter(([name]) => name !== "identifierType")) };
    if (root === "events" && n === 2 && second === "batch" && method === "POST") {
      return events.createBatchEvents(body<Parameters<EventClient["createBatchEvents"]>[0]>(payload), requestOptions).withRawResponse();
    }
    if (root === "events" && n === 1 && method === "POST") {
      return events.createEvent(body<Parameters<EventClient["createEvent"]>[0]>(payload), requestOptions).withRawResponse();
    }
    if (root === "contacts") {
      if (n === 1 && method === "POST") return contacts.createContact(body<Parameters<ContactsClient["createContact"]>[0]>(payload), requestOptions).withRawResponse();
      if (n === 2 && second === "import" && method === "POST") {
        return contacts.importContacts(body<Parameters<ContactsClient["importContacts"]>[0]>(payload), requestOptions).withRawResponse();
      }
      if (n === 5 && second === "lists" && fourth === "contacts" && fifth === "remove" && method === "POST") {
        const listId = Number(third);
        if (!Number.isSafeInteger(listId)) return undefined;
        return contacts.removeContactFromList({ listId, body: body<Parameters<ContactsClient["removeContactFromList"]>[0]["body"]>(payload) }, requestOptions).withRawResponse();
      }
      if (n === 2 && second !== undefined) {
        const identifier = { identifier: second, ...(identifierType !== undefined ? { identifierType } : {}) };
        if (method === "GET") return contacts.getContactInfo(identifier, contactQuery).withRawResponse();
        if (method === "DELETE") return contacts.deleteContact(identifier, contactQuery).withRawResponse();
        if (method === "PUT") {
          return contacts.updateContact({ ...record(payload), ...identifier } as Parameters<ContactsClient["updateContact"]>[0], contactQuery).withRawResponse();
        }
      }
      return undefined;
    }
    if (root === "companies") {
      if (n === 1 && method === "GET") return companies.getAllCompanies({}, requestOptions).withRawResponse();
      if (n === 1 && method === "POST") return companies.createACompany(body<Parameters<CompaniesClient["createACompany"]>[0]>(payload), requestOptions).withRawResponse();
      if (n === 3 && second === "link-unlink" && third !== undefined && method === "PATCH") {
        return companies.linkAndUnlinkCompanyWithContactAndDeal({ ...record(payload), id: third }, requestOptions).withRawResponse();
      }
      if (n === 2 && second !== undefined) {
        if (method === "DELETE") return companies.deleteACompany({ id: second }, requestOptions).withRawResponse();
        if (method === "PATCH") return companies.updateACompany({ ...record(payload), id: second }, requestOptions).withRawResponse();
      }
      return undefined;
    }
    if (root === "processes" && n === 2 && method === "GET") {
      const processId = Number(second);
      if (!Number.isSafeInteger(processId)) return undefined;
      return processes.getProcess({ processId }, requestOptions).withRawResponse();
    }
    return undefined;
  };
}
