//! `skillsandbox scan` through the real binary, on a folder shaped like a clone of a
//! skills repository: every state of manifest and approval, a skill that does not
//! run, and the red flags of the credential stealer with their lines; the benign
//! skills raise none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use crate::skills::{code, text, Project};

fn report(p: &Project, dir: &std::path::Path) -> (i32, Value) {
    let out = p.run(&["scan", "--json", dir.to_str().unwrap()]);
    let (so, se) = text(&out);
    (
        code(&out),
        serde_json::from_str(&so).unwrap_or_else(|e| panic!("{e}: {so}\n{se}")),
    )
}

fn skill<'a>(r: &'a Value, path: &str) -> &'a Value {
    r["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {r:#}"))
}

#[test]
fn a_folder_of_skills_is_reported_with_states_and_flags() {
    let p = Project::new();
    let skills = p.root.join("skills");
    for f in ["word-stats", "slugify", "md2html", "credential-stealer"] {
        p.copy_fixture(f);
    }
    // Approved, then changed; approved and unchanged; learned; ambiguous; invalid.
    for s in ["slugify", "md2html"] {
        let out = p.run(&["approve", skills.join(s).to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{:?}", text(&out));
    }
    std::fs::write(skills.join("slugify/scripts/extra.sh"), "echo hi\n").unwrap();
    std::fs::write(
        skills.join("word-stats/skillsandbox.yaml"),
        "# learned by skillsandbox learn on 2026-12-06 from 1 run(s)\nskill: {name: word-stats, version: \"1.0.0\"}\nentrypoint:\n  command: python3\n  args: [scripts/stats.py]\n  workdir: /skill\n",
    )
    .unwrap();
    p.skill(
        "two-scripts",
        &[
            (
                "SKILL.md",
                "---\nname: two-scripts\ndescription: Two.\n---\n",
            ),
            ("scripts/a.py", "print(1)\n"),
            ("scripts/b.py", "print(2)\n"),
        ],
    );
    p.skill(
        "broken",
        &[("skillsandbox.yaml", "skill: {name: broken}\n")],
    );

    let (rc, r) = report(&p, &skills);
    assert_eq!(rc, 1, "{r:#}");
    let s = skill(&r, "credential-stealer");
    assert_eq!(s["manifest"], "none");
    assert!(s["not_runnable"].is_null());
    let flags: Vec<String> = s["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}:{} {}",
                f["file"].as_str().unwrap(),
                f["line"],
                f["rule"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "scripts/weather.py:8 env-harvest",
        "scripts/weather.py:9 credential-path",
        "scripts/weather.py:17 exfil-host",
    ] {
        assert!(flags.iter().any(|f| f == want), "{want} not in {flags:?}");
    }
    assert_eq!(skill(&r, "md2html")["approval"], "approved");
    assert_eq!(skill(&r, "slugify")["approval"], "changed");
    assert_eq!(skill(&r, "word-stats")["manifest"], "learned");
    assert_eq!(skill(&r, "word-stats")["approval"], "unapproved");
    let two = skill(&r, "two-scripts");
    assert!(
        two["not_runnable"]
            .as_str()
            .unwrap()
            .contains("scripts/a.py"),
        "{two:#}"
    );
    let broken = skill(&r, "broken");
    assert_eq!(broken["manifest"], "invalid");
    assert!(
        broken["not_runnable"]
            .as_str()
            .unwrap()
            .contains("skillsandbox.yaml:1"),
        "{broken:#}"
    );
    for benign in ["word-stats", "slugify", "md2html", "two-scripts"] {
        assert_eq!(
            skill(&r, benign)["flags"],
            serde_json::json!([]),
            "{benign}"
        );
    }

    // The table names the same; a clean folder exits 0; a missing one 2.
    let out = p.run(&["scan", skills.to_str().unwrap()]);
    let (so, _) = text(&out);
    assert!(so.contains("scripts/weather.py:17  exfil-host"), "{so}");
    let (rc, _) = report(&p, &skills.join("md2html"));
    assert_eq!(rc, 0);
    let out = p.run(&["scan", "/nonexistent/skills"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out).1.contains("is not a readable folder"),
        "{:?}",
        text(&out)
    );
}
