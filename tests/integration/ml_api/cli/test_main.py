"""``python -m ml_api.cli``: the command line refuses what the admin API refuses, in the API's words."""

from ml_api import cli


def test_force_takes_user_ids_by_the_api_rules(monkeypatch, overrides, make_experiment, capsys, repo):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment()
    assert cli.main(["force", name, "qa-1 ", "variation"]) == 1
    assert "user_id must not begin or end with whitespace" in capsys.readouterr().err
    assert cli.main(["force", name, "qa-1", "variation"]) == 0
    assert repo.get(name).overrides == {"qa-1": "variation"}
    assert cli.main(["unforce", name, " qa-1"]) == 1
    assert cli.main(["show", "no-such-experiment"]) == 1
    assert "error: no experiment named 'no-such-experiment'" in capsys.readouterr().err
