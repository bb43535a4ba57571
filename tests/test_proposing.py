"""What an agent is shown, and what becomes of what it sends back.

Invariants: the digest carries the lineage (best, own recent trials, other
agents' wins, failures with their reasons) but never an infra error, which
was ours and not the idea's; an accepted edit becomes a commit whose recipe
was never tried before, a recipe already tried is a `duplicate`, and an edit
outside the agent's surface is `illegal_edit`, with tokens kept either way.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.proposals import Proposal, ProposalFailed, Usage
from app.domain.states import Label, TrialStatus
from app.services.propose import load_job, record_proposal
from app.store.models import Search, Trial
from testing.factories import LOWER_LR, Recipe, add_trial, seeded_search


def proposed(session: Session, settings: Settings, recipe: Recipe, agent: str) -> Trial:
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 0))
    add_trial(session, search, agent="opt", parent=baseline, label=Label.INFRA_ERROR,
              hypothesis="an idea our daemon lost")  # fmt: skip
    trial = add_trial(session, search, agent=agent, parent=baseline, label=None,
                      status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()
    return trial


def test_the_digest_shows_the_lineage_but_never_an_infra_error(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    trial = proposed(session, settings, recipe, "opt")

    job = load_job(session, trial.id)

    assert job is not None and job.agent.name == "opt"
    digest = job.digest
    hypotheses = {note.hypothesis for note in [*digest.own_recent, *digest.recent_failures,
                                               *digest.tried_from_parent]}  # fmt: skip
    assert "an idea our daemon lost" not in hypotheses
    assert {note.label for note in digest.recent_failures} == {Label.CRASH, Label.OOM}
    assert {note.agent for note in digest.others_keeps} <= {"arch", "knobs"}
    assert digest.files == {"train.py": (recipe.repo / "train.py").read_text()}


def test_an_accepted_edit_becomes_a_ready_commit_and_the_same_recipe_again_a_duplicate(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    first = proposed(session, settings, recipe, "opt")
    search, parent = session.get(Search, first.search_id), session.get(Trial, first.parent_id)
    assert search is not None and parent is not None
    again = add_trial(session, search, agent="knobs", parent=parent, label=None,
                      status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()

    record_proposal(session, first.id, Proposal("lower the lr", LOWER_LR, Usage(100, 20, 0.01)))
    record_proposal(session, again.id, Proposal("lower the lr too", LOWER_LR))
    session.commit()

    accepted, duplicate = session.get(Trial, first.id), session.get(Trial, again.id)
    assert accepted is not None and duplicate is not None
    assert (accepted.status, accepted.label, accepted.tokens_in) == (TrialStatus.READY, None, 100)
    assert accepted.commit_sha and "+LR = 0.05" in accepted.diff
    assert (duplicate.status, duplicate.label) == (TrialStatus.FINISHED, Label.DUPLICATE)
    assert f"trial {accepted.number}" in (duplicate.label_reason or "")


def test_an_edit_outside_the_surface_is_illegal_and_its_cost_is_kept(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    trial = proposed(session, settings, recipe, "arch")  # arch owns model.py only

    record_proposal(session, trial.id, Proposal("tune lr", LOWER_LR, Usage(50, 5, 0.002)))
    session.commit()

    stored = session.get(Trial, trial.id)
    assert stored is not None
    assert (stored.status, stored.label) == (TrialStatus.FINISHED, Label.ILLEGAL_EDIT)
    assert "outside the agent's surface" in (stored.label_reason or "")
    assert (stored.tokens_in, stored.cost_usd) == (50, 0.002)


def test_a_failed_proposal_is_labelled_with_its_reason(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    trial = proposed(session, settings, recipe, "opt")

    record_proposal(
        session, trial.id, ProposalFailed(Label.PATCH_REJECTED, "no JSON", Usage(10, 1, 0.0))
    )
    session.commit()

    stored = session.get(Trial, trial.id)
    assert stored is not None
    assert (stored.label, stored.label_reason, stored.tokens_in) == (
        Label.PATCH_REJECTED,
        "no JSON",
        10,
    )


def test_a_best_only_study_shows_agents_the_best_line_and_nothing_else(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    trial = proposed(session, settings, recipe, "opt")
    search = session.get(Search, trial.search_id)
    assert search is not None
    search.spec = {**search.spec, "feedback": "best_only"}
    session.commit()

    job = load_job(session, trial.id)

    assert job is not None
    digest = job.digest
    assert digest.own_recent == digest.recent_failures == digest.others_keeps == ()
    assert digest.tried_from_parent == () and digest.leaderboard == ()
    assert digest.parent.number == 0
    # Only the best line (the baseline, then trial 1, the one keep): nothing else is shared.
    assert {ref.number for ref in job.trials} == {0, 1}
    assert [note.number for note in digest.best_ancestry] == [1]
