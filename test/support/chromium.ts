import { existsSync } from "node:fs";

/**
 * A Chromium for the browser tests on any machine with Node alone: the system's Chromium or
 * Chrome when one is installed, else the build the `@sparticuz/chromium` package ships inside
 * its npm tarball (x64 Linux; unpacked to the temp folder on first use), driven by playwright-core.
 */
const SYSTEM_BROWSERS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"];

export async function chromiumExecutable(): Promise<string> {
  const installed = SYSTEM_BROWSERS.find((path) => existsSync(path));
  if (installed) return installed;
  const packaged = (await import("@sparticuz/chromium")).default;
  // Its own graphics stack is for screenshots; these tests need none.
  packaged.setGraphicsMode = false;
  return packaged.executablePath();
}
