from jreid.data.records import Record, Split, combine, relabel


def test_relabel_is_sorted_and_contiguous():
  records = [Record("a", 7, 0), Record("b", 3, 1), Record("c", 7, 2)]
  assert [r.pid for r in relabel(records)] == [1, 0, 1]


def test_combine_offsets_ids_cameras_domains():
  first = Split([Record("a", 1, 0), Record("b", 2, 1)], [Record("q", 5, 0)], [Record("g", 5, 1)])
  second = Split([Record("c", 1, 0)], [Record("q2", 3, 2)], [Record("g2", 3, 0)])
  merged = combine([first, second])
  # first: max pid 5 -> offset 6; max camid 1 -> offset 2; one domain -> offset 1.
  assert [(r.pid, r.camid, r.domain) for r in merged.train] == [(1, 0, 0), (2, 1, 0), (7, 2, 1)]
  assert [(r.pid, r.camid, r.domain) for r in merged.query] == [(5, 0, 0), (9, 4, 1)]
  assert [(r.pid, r.camid, r.domain) for r in merged.gallery] == [(5, 1, 0), (9, 2, 1)]
