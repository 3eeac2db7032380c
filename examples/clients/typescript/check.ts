// Asks Verdict one question over gRPC with @grpc/grpc-js and prints the answer as
// `verdict check` does (without the policies' file:line, which only the bundle on disk knows).
//
//   npm install          # @grpc/grpc-js, @grpc/proto-loader, tsx (package.json)
//   npx tsx check.ts 127.0.0.1:50051 User bob read Document roadmap '{"scopes": ["documents:read"]}'
//
// The service is loaded from the repository's proto/ at run time (@grpc/proto-loader): no
// generated code. google.protobuf.Struct arrives as protobuf's JSON-like object form.

import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

type Value =
  | { nullValue: "NULL_VALUE" }
  | { boolValue: boolean }
  | { numberValue: number }
  | { stringValue: string }
  | { listValue: { values: Value[] } }
  | { structValue: { fields: Record<string, Value> } };

/** A JSON value as a google.protobuf.Value. */
function toValue(json: unknown): Value {
  if (json === null) return { nullValue: "NULL_VALUE" };
  if (typeof json === "boolean") return { boolValue: json };
  if (typeof json === "number") return { numberValue: json };
  if (typeof json === "string") return { stringValue: json };
  if (Array.isArray(json)) return { listValue: { values: json.map(toValue) } };
  const fields: Record<string, Value> = {};
  for (const [key, value] of Object.entries(json as object)) fields[key] = toValue(value);
  return { structValue: { fields } };
}

interface CheckResponse {
  decision: string;
  determiningPolicies: string[];
  snapshotVersion: string;
}

function main(argv: string[]): void {
  if (argv.length !== 6 && argv.length !== 7) {
    console.error("usage: check.ts HOST:PORT TYPE ID ACTION TYPE ID [CONTEXT_JSON]");
    process.exit(2);
  }
  const [endpoint, principalType, principalId, action, resourceType, resourceId] = argv;
  const definition = protoLoader.loadSync("verdict/v1/authorization.proto", {
    includeDirs: [path.join(__dirname, "..", "..", "..", "proto")],
    keepCase: false,
    enums: String,
    defaults: true,
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const verdict = (grpc.loadPackageDefinition(definition) as any).verdict.v1;
  const client = new verdict.Authorization(endpoint, grpc.credentials.createInsecure());
  const context = argv.length === 7 ? toValue(JSON.parse(argv[6])) : undefined;
  const request = {
    principal: { type: principalType, id: principalId },
    action,
    resource: { type: resourceType, id: resourceId },
    context: context && "structValue" in context ? context.structValue : undefined,
  };
  const deadline = new Date(Date.now() + 10_000);
  client.Check(request, { deadline }, (error: grpc.ServiceError | null, answer: CheckResponse) => {
    if (error) {
      console.error(`Verdict answered ${error.code}: ${error.details}`);
      process.exit(1);
    }
    console.log(answer.decision === "DECISION_ALLOW" ? "ALLOW" : "DENY");
    for (const policy of answer.determiningPolicies) console.log(`  determining policy: ${policy}`);
    if (answer.determiningPolicies.length === 0) {
      console.log("  determining policies: none (default deny)");
    }
    console.log(`  snapshot: ${answer.snapshotVersion}`);
    client.close();
  });
}

main(process.argv.slice(2));
