"""The model registry: chunked model-data packages are named, assembled, checked, and fail clearly."""
import hashlib

import pytest

from quantlib.models import embedded


@pytest.fixture
def fake_chunked_model(tmp_path, monkeypatch):
    """A 'model' of three chunks in three fake packages (importable folders), registered by name."""
    parts = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    for i, data in enumerate(parts, 1):
        pkg = tmp_path / f"fake_model_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = {"upstream": "org/fake", "params": "1", "size": sum(map(len, parts)),
             "sha256": hashlib.sha256(b"".join(parts)).hexdigest(),
             "chunks": [[f"fake-model-part{i}==1.0", f"fake_model_part{i}/data/part{i:02d}.bin"] for i in (1, 2, 3)]}
    monkeypatch.setattr(embedded, "registry", lambda: {"fake": entry})
    monkeypatch.setenv("QUANTLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path, parts


def test_chunks_are_assembled_and_checked(fake_chunked_model):
    tmp, parts = fake_chunked_model
    path = embedded.gguf_file("fake")
    assert path.read_bytes() == b"".join(parts) and path == tmp / "cache" / "gguf" / "fake.gguf"
    assert embedded.gguf_file("fake") == path  # cached: checked again, not rebuilt


def test_a_missing_chunk_is_named(fake_chunked_model):
    import importlib
    import shutil

    tmp, parts = fake_chunked_model
    chunk = tmp / "fake_model_part2" / "data" / "part02.bin"
    chunk.unlink()
    with pytest.raises(embedded.ModelDataError, match="chunk fake_model_part2/data/part02.bin is missing"):
        embedded.gguf_file("fake")
    chunk.write_bytes(parts[1])
    shutil.rmtree(tmp / "fake_model_part3")  # a package not installed at all
    importlib.invalidate_caches()
    with pytest.raises(embedded.ModelDataError, match="missing package 'fake_model_part3'.*fake-model-part3==1.0"):
        embedded.gguf_file("fake")


def test_an_altered_chunk_fails_the_checksum(fake_chunked_model):
    tmp, _ = fake_chunked_model
    chunk = tmp / "fake_model_part2" / "data" / "part02.bin"
    chunk.write_bytes(b"X" + chunk.read_bytes()[1:])  # same size, one byte changed
    with pytest.raises(embedded.ModelDataError, match="sha256 .* expected; a chunk is altered"):
        embedded.gguf_file("fake")
    chunk.write_bytes(chunk.read_bytes() + b"!")  # one byte more
    with pytest.raises(embedded.ModelDataError, match="chunks hold 162 bytes, 161 expected.*part02.bin.: 51"):
        embedded.gguf_file("fake")
    assert not (tmp / "cache" / "gguf" / "fake.gguf").exists()  # nothing half-checked left behind


def test_registered_models_name_every_chunk():
    reg = embedded.registry()
    for name in ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        entry = reg[name]
        assert len(entry["sha256"]) == 64 and entry["size"] > 4e8
        assert [r.split("==")[0].rsplit("part", 1)[1] for r, _ in entry["chunks"]] == [
            str(i) for i in range(1, len(entry["chunks"]) + 1)]
    assert len(reg["qwen2.5-coder-0.5b-instruct"]["chunks"]) == 6
    assert len(reg["qwen2.5-coder-1.5b-instruct"]["chunks"]) == 22
