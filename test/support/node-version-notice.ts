/**
 * vitest globalSetup: the AWS SDK warns once per process on Node < 22 (its support for Node 20
 * ends with the releases after the first week of January 2027, https://a.co/c895JFp). Every test
 * worker is a process, so the warning would repeat dozens of times; the workers run with the
 * SDK's documented switch AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
 * (vitest.config.ts), and the run says it once here instead.
 */
export default function setup(): void {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) {
    console.warn(
      `Node ${process.version}: the AWS SDK for JavaScript v3 releases after the first week of January 2027 require Node >= 22 (https://a.co/c895JFp); its per-process warning is silenced in the test workers.`,
    );
  }
}
