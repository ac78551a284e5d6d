// Validates prometheus-operator objects (PrometheusRule, ServiceMonitor) given as JSON
// files against the schemas generated from prometheus-operator's CRDs. Exit 1 with the
// first error of each invalid object.
import { readFileSync } from "node:fs";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { PrometheusRule, ServiceMonitor };
let failed = false;
for (const file of process.argv.slice(2)) {
  const object = JSON.parse(readFileSync(file, "utf8"));
  const Kind = kinds[object.kind];
  if (!Kind) {
    console.error(`${file}: unsupported kind ${object.kind}`);
    failed = true;
    continue;
  }
  try {
    new Kind(object).validate();
    console.log(`${file}: ${object.kind} valid`);
  } catch (e) {
    console.error(`${file}: ${object.kind} invalid: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
