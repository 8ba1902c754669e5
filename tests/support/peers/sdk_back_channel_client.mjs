// A handshake-era client of the pinned TypeScript SDK that can be asked mid-call, driving the gateway over HTTP.
// Usage: node sdk_back_channel_client.mjs <mcp-url> '<headers as JSON>' '<capabilities as JSON>' '<calls as JSON>'
// It declares exactly the given capabilities, answers every sampling and elicitation request it gets (recording it),
// makes the calls ([{name, arguments}], in order), ends the session and prints everything it saw as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, headers = "{}", capabilities = "{}", calls = "[]"] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: JSON.parse(headers) } });
const declared = JSON.parse(capabilities);
const client = new Client({ name: "ts-back-channel-peer", version: "1.0.0" }, { capabilities: declared });
const asked = [];
if (declared.sampling) {
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    asked.push({ method: "sampling/createMessage", text: request.params.messages[0].content.text });
    return { role: "assistant", model: "ts-peer-model", content: { type: "text", text: "ts peer says Paris" } };
  });
}
if (declared.elicitation) {
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    asked.push({ method: "elicitation/create", text: request.params.message });
    return { action: "accept", content: { username: "ts-user", email: "ts@example.com", name: "Ada" } };
  });
}

await client.connect(transport);
const results = [];
for (const call of JSON.parse(calls)) {
  results.push(await client.callTool(call));
}
await transport.terminateSession();
await client.close();

console.log(JSON.stringify({ protocolVersion: transport.protocolVersion, results, asked }));
