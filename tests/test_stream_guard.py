from gateway.stream_guard import split_complete


def test_split_at_sentence_ends_and_newlines():
    assert split_complete("One. Two", 100) == ("One. ", "Two")
    assert split_complete("Is it? Yes! Maybe", 100) == ("Is it? Yes! ", "Maybe")
    assert split_complete('He said "go." Then', 100) == ('He said "go." ', "Then")
    assert split_complete("line one\nline", 100) == ("line one\n", "line")
    assert split_complete("3.14 is pi", 100) == ("", "3.14 is pi")  # no space after the dot: not an end
    assert split_complete("这是句子。下一个", 100) == ("这是句子。", "下一个")


def test_long_text_without_boundary_is_cut_at_a_space():
    done, rest = split_complete("word " * 50, 60)
    assert len(done) <= 60 and done.endswith(" ") and done + rest == "word " * 50
