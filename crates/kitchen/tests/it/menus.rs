//! Menu validation: every bad menu is refused before cooking, with a
//! message that names the recipe and the step.

use kitchen::{Menu, MenuError};

/// A menu with one recipe "soup" whose second step is `step` (TOML lines).
fn soup_with(step: &str) -> String {
    format!(
        r#"
[[recipe]]
name = "soup"

[[recipe.step]]
name = "chop"
kind = "hands-on"
minutes = 5

[[recipe.step]]
{step}
"#
    )
}

fn error(toml: &str) -> String {
    Menu::from_toml(toml)
        .expect_err("menu should be refused")
        .to_string()
}

#[test]
fn unknown_appliance() {
    let e = error(&soup_with(
        r#"name = "grill it"
kind = "wait"
appliance = "grill"
minutes = 3"#,
    ));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("grill it"): unknown appliance "grill" (expected "oven", "burner" or "microwave")"#
    );
}

#[test]
fn zero_and_negative_durations() {
    for minutes in ["0", "-3", "0.0", "nan", "-inf"] {
        let e = error(&soup_with(&format!(
            "name = \"simmer\"\nkind = \"wait\"\nappliance = \"burner\"\nminutes = {minutes}"
        )));
        assert!(
            e.starts_with(r#"recipe "soup", step 2 ("simmer"): minutes must be more than zero"#),
            "{minutes}: {e}"
        );
    }
    // Rounds to zero milliseconds: as good as zero.
    let e = error(&soup_with(
        "name = \"blink\"\nkind = \"hands-on\"\nminutes = 0.000001",
    ));
    assert!(
        e.contains(r#"step 2 ("blink"): minutes must be more than zero"#),
        "{e}"
    );
}

#[test]
fn absurdly_long_durations() {
    let e = error(&soup_with(
        "name = \"age\"\nkind = \"wait\"\nappliance = \"oven\"\nminutes = inf",
    ));
    assert!(
        e.starts_with(r#"recipe "soup", step 2 ("age"): minutes = inf is too long"#),
        "{e}"
    );
}

#[test]
fn missing_fields_name_recipe_and_step() {
    let e = error(&soup_with(
        "name = \"simmer\"\nkind = \"wait\"\nappliance = \"burner\"",
    ));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("simmer"): missing field `minutes`"#
    );

    let e = error(&soup_with(
        "name = \"simmer\"\nappliance = \"burner\"\nminutes = 3",
    ));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("simmer"): missing field `kind`"#
    );

    // A step without a name is found by its number.
    let e = error(&soup_with("kind = \"hands-on\"\nminutes = 3"));
    assert_eq!(e, r#"recipe "soup", step 2: missing field `name`"#);

    let e = error(&soup_with(
        "name = \"simmer\"\nkind = \"wait\"\nminutes = 3",
    ));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("simmer"): a waiting step needs an `appliance` (oven, burner or microwave)"#
    );

    // A recipe without a name is found by its position.
    let e = error("[[recipe]]\n[[recipe.step]]\nname = \"x\"\nkind = \"hands-on\"\nminutes = 1\n");
    assert_eq!(e, r##"recipe "#1": missing field `name`"##);
}

#[test]
fn appliance_the_kitchen_does_not_have() {
    let toml = format!(
        "[kitchen]\nmicrowaves = 0\n{}",
        soup_with("name = \"reheat\"\nkind = \"wait\"\nappliance = \"microwave\"\nminutes = 2")
    );
    assert_eq!(
        error(&toml),
        r#"recipe "soup", step 2 ("reheat"): needs the microwave, but the kitchen has none (set [kitchen] microwaves = 1 or more)"#
    );
}

#[test]
fn wrong_kind_and_misplaced_appliance() {
    let e = error(&soup_with("name = \"stir\"\nkind = \"watch\"\nminutes = 1"));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("stir"): unknown kind "watch" (expected "hands-on" or "wait")"#
    );
    let e = error(&soup_with(
        "name = \"stir\"\nkind = \"hands-on\"\nappliance = \"burner\"\nminutes = 1",
    ));
    assert!(
        e.starts_with(r#"recipe "soup", step 2 ("stir"): a hands-on step uses the cook"#),
        "{e}"
    );
}

#[test]
fn typos_in_field_names_are_not_ignored() {
    let e = error(&soup_with(
        "name = \"stir\"\nkind = \"hands-on\"\nminuts = 1",
    ));
    assert_eq!(
        e,
        r#"recipe "soup", step 2 ("stir"): unknown field `minuts`"#
    );
    let e = error("[kitchen]\novens = 2\n[[recipe]]\nname = \"x\"\n");
    assert!(e.contains("unknown field `ovens` in [kitchen]"), "{e}");
}

#[test]
fn whole_menu_problems() {
    assert_eq!(Menu::from_toml("").unwrap_err(), MenuError::NoRecipes);
    let e = error("[[recipe]]\nname = \"empty\"\n");
    assert_eq!(e, r#"recipe "empty": the recipe has no steps"#);
    let one = "[[recipe]]\nname = \"x\"\n[[recipe.step]]\nname = \"a\"\nkind = \"hands-on\"\nminutes = 1\n";
    let e = error(&format!("{one}{one}"));
    assert_eq!(
        e,
        r#"recipe "x" appears twice; recipe names must be unique"#
    );
    let e = error("this is = = not toml");
    assert!(e.starts_with("menu is not valid TOML"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn the_documented_example_menu_parses() {
    // The example in recipe.rs's module docs, kept in sync by hand.
    let menu = Menu::from_toml(
        r#"
        [kitchen]
        oven_racks = 1
        burners = 4
        microwaves = 1

        [[recipe]]
        name = "beans"

        [[recipe.step]]
        name = "poke holes in the bag, put it on a plate"
        kind = "hands-on"
        minutes = 1

        [[recipe.step]]
        name = "microwave"
        kind = "wait"
        appliance = "microwave"
        minutes = 5
        "#,
    )
    .unwrap();
    assert_eq!(menu.sequential_duration().as_secs(), 6 * 60);
}
