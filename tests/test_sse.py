from gateway.sse import SSEDecoder


def test_events_split_across_chunks_and_crlf():
    d = SSEDecoder()
    assert d.feed(b"data: {\"a\"") == []
    assert d.feed(b": 1}\r\n\r\ndata: x\n") == [b'{"a": 1}']
    assert d.feed(b"\n: keep-alive\n\ndata: y\ndata: z\n\n") == [b"x", b"y\nz"]
    assert d.pending() == b""


def test_cr_and_lf_split_between_chunks():
    d = SSEDecoder()
    assert d.feed(b"data: 1\r") == []
    assert d.feed(b"\n\r\n") == [b"1"]


def test_pending_reports_unfinished_event():
    d = SSEDecoder()
    d.feed(b"data: {\"half\":")
    assert d.pending() == b'data: {"half":'
