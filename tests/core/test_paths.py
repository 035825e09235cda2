"""Output paths: what `check_output_folder/file` accept and refuse, and `writing`'s one line."""
import errno

import pytest

from jreid.core import paths
from jreid.errors import OutputPathError


def test_a_folder_to_create_is_accepted_without_creating_it(tmp_path):
  target = tmp_path / "a" / "b"
  assert paths.check_output_folder(target, "workdir") == target
  assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("relative, fragment", [
    ("file", "workdir .*file is a file; expected a folder"),
    ("file/run", "workdir .*file/run: .*file is a file, not a folder"),
])
def test_a_file_in_the_way_of_a_folder(tmp_path, relative, fragment):
  (tmp_path / "file").write_text("x")
  with pytest.raises(OutputPathError, match=fragment):
    paths.check_output_folder(tmp_path / relative, "workdir")


def test_output_files(tmp_path):
  (tmp_path / "file").write_text("x")
  assert paths.check_output_file(tmp_path / "new" / "model.pth", "--out") == tmp_path / "new" / "model.pth"
  assert paths.check_output_file(tmp_path / "file", "--out") == tmp_path / "file"  # overwritten
  with pytest.raises(OutputPathError, match=r"--out .* is a folder; expected a file name"):
    paths.check_output_file(tmp_path, "--out")
  with pytest.raises(OutputPathError, match=r"--out .*file/model.pth: .*file is a file, not a folder"):
    paths.check_output_file(tmp_path / "file" / "model.pth", "--out")


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on the device"),
                                          (errno.EROFS, "the file system is read-only"),
                                          (errno.EACCES, "permission denied")])
def test_writing_names_the_path_and_the_reason(tmp_path, code, reason):
  with pytest.raises(OutputPathError, match=f"cannot write the file {tmp_path}/x.json: {reason}; "
                                            "the previous version is intact"):
    with paths.writing(tmp_path / "x.json", "the file"):
      raise OSError(code, "raw")


def test_writing_passes_other_errors_on_unchanged(tmp_path):
  from jreid.errors import ImageReadError
  with pytest.raises(ImageReadError, match="cannot read image x.jpg"):
    with paths.writing(tmp_path, "the pictures in"):
      raise ImageReadError("cannot read image x.jpg")
