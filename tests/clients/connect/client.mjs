// A real Connect / gRPC-Web client (connect-es) for tests/connect.rs.
//
// node client.mjs BASE_URL PROTOCOL CALLS
//   PROTOCOL: connect | connect-proto | grpc-web
//   CALLS: comma-separated `kind:token`, kind `unary` or `stream`, token `-`
//          for none. Prints one JSON line per call: the Connect code (0 for
//          success), the message and the reply.
import { create, createFileRegistry } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  file_google_protobuf_wrappers,
} from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

const [baseUrl, protocol, calls] = process.argv.slice(2);

// test.v1.Echo { Say(StringValue) returns (StringValue);
//                Listen(StringValue) returns (stream StringValue); }
const file = create(FileDescriptorProtoSchema, {
  name: "test/v1/echo.proto",
  package: "test.v1",
  dependency: ["google/protobuf/wrappers.proto"],
  syntax: "proto3",
  service: [
    {
      name: "Echo",
      method: [
        {
          name: "Say",
          inputType: ".google.protobuf.StringValue",
          outputType: ".google.protobuf.StringValue",
        },
        {
          name: "Listen",
          inputType: ".google.protobuf.StringValue",
          outputType: ".google.protobuf.StringValue",
          serverStreaming: true,
        },
      ],
    },
  ],
});
const registry = createFileRegistry(file, (name) =>
  name === "google/protobuf/wrappers.proto"
    ? file_google_protobuf_wrappers
    : undefined,
);
const Echo = registry.getService("test.v1.Echo");

// HTTP/2 (prior knowledge): over HTTP/1.1 a server that answers before
// reading the request body closes the connection, and Node's client may
// fail writing the body (EPIPE) before it reads the answer.
const options = { baseUrl, httpVersion: "2" };
const transport =
  protocol === "grpc-web"
    ? createGrpcWebTransport({ ...options, useBinaryFormat: true })
    : createConnectTransport({
        ...options,
        useBinaryFormat: protocol === "connect-proto",
      });
const client = createClient(Echo, transport);

for (const call of calls.split(",")) {
  const [kind, token] = call.split(":");
  const headers = token === "-" ? {} : { authorization: `Bearer ${token}` };
  try {
    let reply;
    if (kind === "stream") {
      const values = [];
      for await (const message of client.listen({ value: "hi" }, { headers })) {
        values.push(message.value);
      }
      reply = values.join("|");
    } else {
      reply = (await client.say({ value: "hi" }, { headers })).value;
    }
    console.log(JSON.stringify({ call, code: 0, reply }));
  } catch (e) {
    const error = ConnectError.from(e);
    console.log(
      JSON.stringify({ call, code: error.code, message: error.rawMessage }),
    );
  }
}
