// Validates every ServiceMonitor in a rendered chart (YAML on stdin) against the Prometheus
// Operator's CRD schema (kubernetes-models). Exit 1 on the first invalid one, 2 if none found.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const docs = yaml.loadAll(readFileSync(0, "utf8")).filter((d) => d && d.kind === "ServiceMonitor");
if (docs.length === 0) {
  console.error("no ServiceMonitor in the input");
  process.exit(2);
}
for (const doc of docs) {
  try {
    new ServiceMonitor(doc).validate();
  } catch (error) {
    console.error(`ServiceMonitor ${doc.metadata?.name}: ${error.message}`);
    process.exit(1);
  }
}
console.log(`${docs.length} ServiceMonitor(s) valid`);
