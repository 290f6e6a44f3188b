// What the stage config's `lookup_tables` (lib/config/lookup-tables.ts) adds to the stack, read by
// osls when it resolves serverless.yml and infra/resources/iam.yml:
//   cohortExportEvents  the export tick's schedule plus one S3 ObjectCreated trigger per `on_upload`
//                       table, filtered to exactly its object (prefix and suffix are the whole key);
//   hasSources          "true" when any table names a source object;
//   sourceObjectArns    those objects, and nothing else, for the cohort-export role's GetObject.
// The config is validated by `npm run build` (lib/config/stage.ts) before packaging; this file
// only reads the keys it needs.
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

/** Fn::Sub treats "${" as a reference; "${!" writes it literally. */
const subLiteral = (text) => text.replace(/\$\{/g, "${!");

module.exports = async ({ resolveVariable }) => {
  const configFile = await resolveVariable("param:configFile");
  const config = JSON.parse(readFileSync(resolve(__dirname, "../..", configFile), "utf8"));
  const tables = Array.isArray(config.lookup_tables) ? config.lookup_tables : [];
  const schedule = {
    schedule: { rate: await resolveVariable("param:cohortExportSchedule"), enabled: await resolveVariable("param:cohortExportEnabled") },
  };
  const uploads = tables
    .filter((table) => table.schedule === "on_upload")
    .map((table) => ({
      s3: {
        bucket: table.source.bucket,
        // The catalog bucket belongs to whoever writes the file; the stack only attaches a notification.
        existing: true,
        event: "s3:ObjectCreated:*",
        rules: [{ prefix: table.source.key }, { suffix: table.source.key }],
      },
    }));
  const objects = [...new Set(tables.map((table) => `${table.source.bucket}/${table.source.key}`))];
  return {
    cohortExportEvents: [schedule, ...uploads],
    hasSources: objects.length > 0 ? "true" : "false",
    sourceObjectArns: objects.map((object) => ({ "Fn::Sub": `arn:\${AWS::Partition}:s3:::${subLiteral(object)}` })),
  };
};
