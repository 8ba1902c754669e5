// A client built on the pinned TypeScript SDK (@modelcontextprotocol/sdk), driving the gateway over streamable HTTP.
// Usage: node sdk_client.mjs <mcp-url> '<headers as JSON>'
// It lists the tools, calls demo__add, demo__count_slowly (collecting progress) and demo__ask_model (answering the
// upstream's sampling request itself), ends the session with DELETE, and prints everything it saw as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, headers = "{}"] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: JSON.parse(headers) } });
const client = new Client({ name: "ts-sdk-peer", version: "1.0.0" }, { capabilities: { sampling: {} } });
const samplingRequests = [];
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  const question = request.params.messages[0].content.text;
  samplingRequests.push(question);
  return { role: "assistant", model: "ts-peer-model", content: { type: "text", text: `ts peer heard: ${question}` } };
});

await client.connect(transport);
const sessionId = transport.sessionId;
const tools = (await client.listTools()).tools.map((tool) => tool.name);
const add = await client.callTool({ name: "demo__add", arguments: { a: 20, b: 22 } });
const progress = [];
const counted = await client.callTool({ name: "demo__count_slowly", arguments: { n: 3, delay: 0.05 } }, undefined, {
  onprogress: (notification) => progress.push(notification.progress),
});
const sampled = await client.callTool({ name: "demo__ask_model", arguments: { question: "what is 6 x 7?" } });
await transport.terminateSession();
await client.close();

console.log(
  JSON.stringify({
    protocolVersion: transport.protocolVersion,
    server: client.getServerVersion(),
    sessionId,
    tools,
    add,
    counted,
    progress,
    sampled,
    samplingRequests,
  }),
);
