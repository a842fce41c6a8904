"""Class: a teacher creates a class (a challenge, the settings students may change) and shares its link; students
join with a nickname and train for it; the board ranks their finished runs, plots any setting against the metric,
shows who trains now, and lets the teacher close the class, hide an entry, change the challenge and download CSV.

The class lives in the run store (aecore.runs.store.classes), so it survives restarts; `?class=<code>` opens it, and
`&teacher=<secret>` opens it as its teacher (the secret is compared in constant time, never shown to a student).
"""
import time

import streamlit as st

from aecore.engine.fields import FIELDS
from aecore.labs import classroom
from aecore.labs.classroom import Challenge
from aecore.runs.store import NicknameTaken, StoreError
from ui import classroom as ui, guide, server, session

K = "class."


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


st.title("Class")
guide.intro("classroom")
registry, me = server.run_registry(), session.visitor()
kept = ui.store()
if kept is None:
    st.error("**Classes need the run store**, and this server keeps none"
             + (f": {registry.keeper.problem}" if registry.keeper.problem else " (AELAB_STORE=none)")
             + ". See README, \"Where runs are kept\".", icon=":material/database:")
    st.stop()
teaching = st.session_state.setdefault(ui.TEACHER, {})

# ------------------------------------------------------------------------------------------------ no class: create, join
asked = st.query_params.get("class")
if not asked:
    left, right = st.columns(2, gap="large")
    with left.form(K + "create"):
        st.header("Create a class")
        title = st.text_input("Title (the students see it)", max_chars=80, key=K + "title")
        challenge = ui.challenge_form(K + "new.")
        made = st.form_submit_button("Create the class", icon=":material/add:", type="primary")
    if made and challenge is not None:
        try:
            new = classroom.create(kept, title, challenge)
        except (ValueError, StoreError) as e:
            left.error(f"**Not created.** {e}", icon=":material/error:")
        else:
            teaching[new.code] = new.secret
            st.query_params.update({"class": new.code, "teacher": new.secret})
            st.rerun()
    with right.form(K + "join"):
        st.header("Join a class")
        typed = st.text_input("Class code (from your teacher's link)", max_chars=40, key=K + "code")
        if st.form_submit_button("Open the class", icon=":material/login:"):
            try:
                st.query_params["class"] = classroom.check_code(typed)
                st.rerun()
            except ValueError as e:
                st.error(f"**No such class.** {e}.", icon=":material/error:")
    st.stop()

# ------------------------------------------------------------------------------------------------ the class
try:
    code = classroom.check_code(asked)
    cls = kept.classes.get(code)
except ValueError as e:
    code, cls = None, None
    st.error(f"**This link holds no class code.** {e}.", icon=":material/link_off:")
if code and cls is None:
    st.error(f"**No class has the code {code}.** Check the link with your teacher.", icon=":material/link_off:")
if cls is not None and cls["expired"]:
    st.error(f"**The class {cls['title']} has ended** (on {time.strftime('%d %B %Y', time.gmtime(cls['expires']))}). "
             "Ask your teacher for a new link.", icon=":material/event_busy:")
    cls = None
if cls is None:
    st.page_link("app_pages/classroom.py", label="Create or join a class", icon=":material/arrow_back:")
    st.stop()

secret = st.query_params.get("teacher") or teaching.get(code)
teacher = classroom.is_teacher(cls["teacher"], secret)
if secret and not teacher:
    st.error("**This teacher link is not valid for this class**: it is shown as to a student.", icon=":material/key_off:")
    teaching.pop(code, None)
    if "teacher" in st.query_params:
        del st.query_params["teacher"]
elif teacher:
    teaching[code] = secret
    st.query_params.pop("teacher", None)     # the secret stays out of the address bar (the session holds it)
challenge = Challenge.from_dict(cls["challenge"])
st.header(cls["title"])
st.markdown(challenge.describe())
if cls["closed"]:
    st.warning("This class is closed to new runs." + (" Reopen it below." if teacher else ""), icon=":material/lock:")

if teacher:
    with st.expander("Teach this class", expanded=True, icon=":material/school:"):
        ui.links_panel(code, secret)
        c1, c2 = st.columns(2)
        if c1.button("Reopen the class" if cls["closed"] else "Close the class to new runs", key=K + "close",
                     icon=":material/lock_open:" if cls["closed"] else ":material/lock:"):
            kept.classes.update(code, closed=not cls["closed"])
            st.rerun()
        c2.download_button("Download the board (CSV)", classroom.board_csv(kept.classes.entries(code), challenge),
                           file_name=f"class-{code}.csv", mime="text/csv", icon=":material/download:", key=K + "csv")
        with st.form(K + "change"):
            st.markdown("**Change the challenge** (finished runs are scored again)")
            changed = ui.challenge_form(K + "edit.", challenge)
            if st.form_submit_button("Change it") and changed is not None and changed != challenge:
                kept.classes.update(code, challenge=changed.to_dict())
                with st.spinner("Scoring the runs again…"):
                    classroom.rescore(kept, code, ui.model_of)
                st.rerun()
else:
    nickname = kept.classes.nickname(code, me)
    if nickname is None:
        with st.form(K + "nick"):
            typed = st.text_input("Your nickname (the board shows it)", max_chars=classroom.NICKNAME_MAX,
                                  key=K + "nickname")
            if st.form_submit_button("Join", icon=":material/login:", type="primary"):
                try:
                    nickname = kept.classes.join(code, me, classroom.check_nickname(typed))
                    st.rerun()
                except (ValueError, NicknameTaken, StoreError) as e:
                    st.error(f"**Not joined.** {e}.", icon=":material/error:")
    else:
        st.markdown(f"You are **{nickname}** in this class.")
        if st.button("Train for this class", icon=":material/model_training:", type="primary", key=K + "train",
                     disabled=cls["closed"]):
            ui.go_train(code, nickname, challenge)

# ------------------------------------------------------------------------------------------------ the board
# The board follows the class by itself: every 2 s while someone trains (their runs land as they end), every 10 s
# otherwise (new students, the teacher's changes); only this part of the page reruns.
busy = any(e["state"] == "training" for e in kept.classes.entries(code))


@st.fragment(run_every=2.0 if busy else 10.0)
def board():
    st.header("The board")
    entries = kept.classes.entries(code)
    rows = classroom.board_rows(entries, challenge, hidden=teacher)
    training = [e for e in entries if e["state"] == "training"]
    counts = registry.counts()
    st.caption(f"{plural(kept.classes.students(code), 'student')} · {plural(len(rows), 'run')} on the board · "
               f"{len(training)} training now · the server trains {plural(counts['running'], 'run')}, "
               f"{counts['queued']} waiting")
    if rows:
        st.dataframe(rows, hide_index=True, key=K + "table")
        scatter = st.selectbox("Setting against the metric", list(challenge.editable) or ["lr"],
                               format_func=lambda n: FIELDS[n].label, key=K + "scatter")
        st.plotly_chart(classroom.scatter_figure(entries, challenge, scatter), key=K + "chart",
                        config={"displayModeBar": False}, width="stretch")
    else:
        st.info("No finished run yet. Each student's runs land here by themselves when they end.",
                icon=":material/hourglass_empty:")
    if training:
        now = []
        for e in training:
            view = registry.view(e["run_id"])
            m = view.snapshot.last if view is not None else None
            now.append(f"**{e['nickname']}**: {view.state if view else 'gone'}"
                       + (f", epoch {m.epoch}/{view.spec.train.epochs}" if m else ""))
        st.markdown("Training now: " + " · ".join(now))
    not_counted = [e for e in entries if e["state"] in ("not counted", "failed", "stopped", "interrupted")]
    if not_counted:
        with st.expander(f"Runs not on the board ({len(not_counted)})"):
            for e in not_counted:
                st.markdown(f"- **{e['nickname']}**: {e['state']}" + (f" ({e['note']})" if e["note"] else ""))

    ranked = classroom.ranking(entries, challenge, hidden=teacher)
    if ranked:
        labels = {e["run_id"]: f"{e['rank']}. {e['nickname']} · {e['metric']:.4f}"
                               + (" (hidden)" if e["hidden"] else "") for e in ranked}
        pick = st.selectbox("A run of the board", list(labels), format_func=labels.get, key=K + "pick")
        a, b = st.columns(2)
        opened = st.session_state.setdefault(K + "opened", {})     # run id → added (True) or gone (False)
        if a.button("Open its model", icon=":material/open_in_new:", key=K + "open",
                    help="Adds the run's model to your models, for Inspect or Compare; the run stays its owner's"):
            opened[pick] = ui.open_run(next(e for e in ranked if e["run_id"] == pick), cls["title"])
        if opened.get(pick):         # kept across the board's refreshes
            st.success("Added to your models: Inspect and Compare show it now.", icon=":material/check:")
            st.page_link("app_pages/inspect.py", label="Inspect", icon=":material/biotech:")
        elif pick in opened:
            st.warning("This run is no longer kept on the server.", icon=":material/delete:")
        if teacher:
            hidden = next(e for e in ranked if e["run_id"] == pick)["hidden"]
            if b.button("Show it again" if hidden else "Hide it from the board", key=K + "hide",
                        icon=":material/visibility:" if hidden else ":material/visibility_off:"):
                kept.classes.hide(code, pick, not hidden)
                st.rerun()
    if busy != bool(training):
        st.rerun()        # the class started or stopped training: the whole page, so the poll rate follows


board()
