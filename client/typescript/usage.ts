// How a frontend uses relink-api.d.ts, type-checked by generate.sh -check
// (tsc --strict): if the types stop describing these calls, CI fails.
// Not shipped; nothing here runs.
import type { components, operations, paths } from "./relink-api";

type Repair = components["schemas"]["Repair"];
type ApiError = components["schemas"]["Error"];
type ReconnectResult =
  paths["/v1/repairs/{provider}/{connectionId}/reconnect"]["post"]["responses"][200]["content"]["application/json"];
type CompleteBody = NonNullable<operations["complete"]["requestBody"]>["content"]["application/json"];

// The page's loop: reconnect, open the widget, complete.
export async function reconnect(base: string, token: string, provider: string, connectionId: string): Promise<ReconnectResult> {
  const res = await fetch(`${base}/v1/repairs/${encodeURIComponent(provider)}/${encodeURIComponent(connectionId)}/reconnect`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: JSON.stringify({ forceNewSession: false } satisfies components["schemas"]["ReconnectRequest"]),
  });
  if (!res.ok) {
    const e = (await res.json()) as ApiError;
    throw new Error(`${e.error.message} (HTTP ${res.status}, ${e.error.code})`);
  }
  return (await res.json()) as ReconnectResult;
}

export const complete: CompleteBody = { connectorToken: "ct", publicToken: "public-sandbox", metadata: {} };

// Statuses and error codes are the document's enums.
export const waiting: Repair["status"] = "AWAITING_USER";
export const notFound: ApiError["error"]["code"] = "not_found";
// @ts-expect-error: not a status the document lists
export const unknown: Repair["status"] = "BROKEN";
