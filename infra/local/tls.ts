import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A throwaway self-signed certificate for the local intake over https (`INTAKE_TLS=1 npm start`):
 * the Node SDK refuses `import` over plain http once a `secret` is set
 * (docs/vendors/mixpanel-wire.md §5). Node has no certificate generator, so this runs the
 * `openssl` CLI; valid for 127.0.0.1 and localhost, for 7 days.
 */
export interface LocalCertificate {
  readonly key: string;
  readonly cert: string;
  /** PEM file to trust, e.g. NODE_EXTRA_CA_CERTS=<certPath> for a Node client. */
  readonly certPath: string;
  readonly keyPath: string;
}

export function generateLocalCertificate(dir: string = mkdtempSync(join(tmpdir(), "mixpanel-relay-tls-"))): LocalCertificate {
  const keyPath = join(dir, "intake-key.pem");
  const certPath = join(dir, "intake-cert.pem");
  const result = spawnSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "7",
      "-keyout", keyPath, "-out", certPath,
      "-subj", "/CN=mixpanel-relay local intake",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { encoding: "utf8", timeout: 30_000 },
  );
  if (result.error || result.status !== 0) {
    throw new Error(
      `INTAKE_TLS=1 needs the openssl CLI to make a self-signed certificate (apt-get install openssl): ${result.error?.message ?? result.stderr}`,
    );
  }
  return { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8"), certPath, keyPath };
}
