from cuteattn import compile_cache


def test_compiles_once_per_key():
    calls = []

    def build(tag):
        calls.append(tag)
        return object()

    first = compile_cache.get_or_compile(("test", "a", 128), lambda: build("a"))
    again = compile_cache.get_or_compile(("test", "a", 128), lambda: build("a"))
    other = compile_cache.get_or_compile(("test", "a", 64), lambda: build("b"))
    assert first is again and other is not first
    assert calls == ["a", "b"]
