"""DeletedBuiltins puts back every deleted name, whatever else the code did to the dict."""

from __future__ import annotations

from cellbox.workers.python.builtins_guard import DeletedBuiltins


def names() -> dict[str, object]:
    return {f"name{index}": index for index in range(20)}


def test_nothing_deleted_nothing_changes() -> None:
    namespace = names()
    guard = DeletedBuiltins(namespace)
    guard.restore()
    assert namespace == names()


def test_a_deleted_name_comes_back_with_its_value() -> None:
    namespace = names()
    guard = DeletedBuiltins(namespace)
    del namespace["name3"]
    guard.restore()
    assert namespace == names()


def test_added_and_replaced_names_stay() -> None:
    namespace = names()
    guard = DeletedBuiltins(namespace)
    namespace["extra"] = "mine"
    namespace["name0"] = "replaced"
    guard.restore()
    assert namespace["extra"] == "mine" and namespace["name0"] == "replaced"
    assert namespace.keys() == names().keys() | {"extra"}


def test_a_deletion_hidden_by_as_many_additions_is_found() -> None:
    # As many names as before, the last one the same: only the order tells.
    namespace = names()
    guard = DeletedBuiltins(namespace)
    del namespace["name5"]
    last = namespace.pop("name19")
    namespace["extra"] = 1
    namespace["name19"] = last
    assert len(namespace) == len(names()) and list(namespace)[-1] == "name19"
    guard.restore()
    assert namespace["name5"] == 5 and namespace["extra"] == 1


def test_a_name_deleted_and_put_back_by_the_code_is_no_loss() -> None:
    namespace = names()
    guard = DeletedBuiltins(namespace)
    del namespace["name2"]
    namespace["name2"] = "again"
    guard.restore()
    assert namespace["name2"] == "again" and namespace.keys() == names().keys()
    del namespace["name7"]  # found again after the order changed for good
    guard.restore()
    assert namespace["name7"] == 7


def test_a_cleared_namespace_is_refilled() -> None:
    namespace = names()
    guard = DeletedBuiltins(namespace)
    namespace.clear()
    guard.restore()
    assert namespace == names()


def test_restores_the_real_builtins_it_needs_itself() -> None:
    import builtins

    guard = DeletedBuiltins()
    saved = {name: getattr(builtins, name) for name in ("len", "list", "print")}
    try:
        for name in saved:
            delattr(builtins, name)
        guard.restore()
        assert all(getattr(builtins, name) is value for name, value in saved.items())
    finally:
        for name, value in saved.items():
            setattr(builtins, name, value)
