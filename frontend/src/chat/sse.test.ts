import { SseParser } from "./sse";

describe("SseParser", () => {
  it("returns whole events, however the bytes are split", () => {
    const raw =
      'event: conversation\ndata: {"conversation_id":"c1","title":"Hi","user_message_id":"u1"}\n\n' +
      'event: token\ndata: {"text":"Hel"}\n\n' +
      'event: token\ndata: {"text":"lo [1]"}\n\n';
    const parser = new SseParser();
    const events = [];
    for (let i = 0; i < raw.length; i += 7) events.push(...parser.feed(raw.slice(i, i + 7)));
    expect(events.map((e) => e.event)).toEqual(["conversation", "token", "token"]);
    expect(events[2]).toEqual({ event: "token", data: { text: "lo [1]" } });
  });

  it("skips heartbeat comments and reads CRLF line ends", () => {
    const parser = new SseParser();
    const events = parser.feed(
      ': ping - 2026-01-01\r\n\r\nevent: done\r\ndata: {"message_id":"m","status":"complete","cited":[1]}\r\n\r\n',
    );
    expect(events).toEqual([
      { event: "done", data: { message_id: "m", status: "complete", cited: [1] } },
    ]);
  });

  it("keeps an unfinished event until its blank line arrives", () => {
    const parser = new SseParser();
    expect(parser.feed('event: token\ndata: {"text":"a"}\n')).toEqual([]);
    expect(parser.feed("\n")).toEqual([{ event: "token", data: { text: "a" } }]);
  });
});
