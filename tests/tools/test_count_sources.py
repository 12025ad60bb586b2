import csv

from components import configs
from sources import origin
from tools import count_sources


def test_the_counts_of_the_sample_add_up_and_name_the_command():
    text = count_sources.count(configs.SAMPLE_DATA_DIR)
    assert text.startswith(f"# python -m tools.count_sources --data_dir={configs.SAMPLE_DATA_DIR}")
    blocks = [block.splitlines()[1:] for block in text.split("\n\n")[1:] if block.strip()]
    assert len(blocks) == 3
    for block in blocks:
        *groups, total = [line.split()[-5:] for line in block]
        assert [sum(int(group[i]) for group in groups) for i in range(5)] == [int(n) for n in total]
    assert any(line.split()[0] in (origin.CASE_REPORT, origin.SERIES) for line in blocks[0])


def test_a_table_without_the_origin_columns_is_refused_in_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with open(configs.SAMPLE_DATA_DIR / "metadata.csv", newline="") as source, \
            open(data / "metadata.csv", "w", newline="") as target:
        reader = csv.DictReader(source)
        columns = [c for c in reader.fieldnames if c != "doi"]
        writer = csv.DictWriter(target, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(reader)
    assert count_sources.main([f"--data_dir={data}"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("count_sources:") and "doi" in error and "\n" not in error
