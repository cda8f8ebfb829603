//! The menu as data: recipes made of steps, the kitchen they are cooked in,
//! the talk's built-in dinner, and the TOML format for your own.
//!
//! A step is either *hands-on* (it needs a cook, who does one thing at a
//! time) or a *wait* (it needs an appliance — the oven, a stove burner, the
//! microwave — but not the cook). Nothing here runs anything: `sim.rs` turns
//! a validated [`Menu`] into async tasks. Everything that can be wrong with a
//! menu is found here, before cooking starts, and reported as a
//! [`MenuError`] naming the recipe and the step.
//!
//! The TOML format (every field shown; `[kitchen]` is optional):
//!
//! ```toml
//! [kitchen]
//! oven_racks = 1    # how many dishes the oven holds at once
//! burners = 4       # stove burners
//! microwaves = 1
//!
//! [[recipe]]
//! name = "beans"
//!
//! [[recipe.step]]
//! name = "poke holes in the bag, put it on a plate"
//! kind = "hands-on"   # needs a cook
//! minutes = 1
//!
//! [[recipe.step]]
//! name = "microwave"
//! kind = "wait"       # needs an appliance, not the cook
//! appliance = "microwave"
//! minutes = 5
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest step a menu may ask for. A typo such as `minutes = 30000`
/// would otherwise make `--real-time` run for days.
pub const MAX_STEP: Duration = Duration::from_secs(24 * 60 * 60);

/// The most recipes or steps per recipe a menu may have; the chart and the
/// timeline stay readable and a hostile file cannot make us spawn millions
/// of tasks.
pub const MAX_RECIPES: usize = 64;
pub const MAX_STEPS: usize = 256;

/// The appliances a kitchen can have. A waiting step names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Appliance {
    /// The oven; its capacity is the number of racks.
    Oven,
    /// One burner of the stove.
    Burner,
    /// The microwave.
    Microwave,
}

impl Appliance {
    pub const ALL: [Appliance; 3] = [Appliance::Oven, Appliance::Burner, Appliance::Microwave];

    /// The name used in menus and in the timeline's "who" column.
    pub fn name(self) -> &'static str {
        match self {
            Appliance::Oven => "oven",
            Appliance::Burner => "burner",
            Appliance::Microwave => "microwave",
        }
    }

    /// Parses a menu's `appliance = "..."`. `stove` is accepted for a burner
    /// because that is what people write.
    pub fn parse(s: &str) -> Option<Appliance> {
        match s.trim().to_ascii_lowercase().as_str() {
            "oven" => Some(Appliance::Oven),
            "burner" | "stove" | "stove burner" => Some(Appliance::Burner),
            "microwave" => Some(Appliance::Microwave),
            _ => None,
        }
    }
}

impl fmt::Display for Appliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "appliance")]
pub enum Need {
    /// The cook's hands, for the whole step.
    HandsOn,
    /// An appliance, for the whole step; the cook is free meanwhile.
    Wait(Appliance),
}

/// One validated step of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub need: Need,
    /// Always in `(0, MAX_STEP]` and a whole number of milliseconds, so the
    /// paused clock lands on it exactly.
    pub duration: Duration,
}

/// One validated recipe: a name and its steps, done strictly in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Recipe {
    /// How long the recipe takes on its own, with a cook who does nothing
    /// else: the sum of its steps. No schedule can finish it sooner.
    pub fn own_duration(&self) -> Duration {
        self.steps.iter().map(|s| s.duration).sum()
    }

    /// The cook's share of the recipe: the sum of its hands-on steps.
    pub fn hands_on(&self) -> Duration {
        self.steps
            .iter()
            .filter(|s| s.need == Need::HandsOn)
            .map(|s| s.duration)
            .sum()
    }
}

/// How many of each appliance the kitchen has. The cooks are not here:
/// how many people cook is a choice made per run (`--cooks`), not a fact of
/// the kitchen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Appliances {
    pub oven_racks: usize,
    pub burners: usize,
    pub microwaves: usize,
}

impl Default for Appliances {
    /// The talk's kitchen: an oven with one rack, a four-burner stove, one
    /// microwave.
    fn default() -> Self {
        Appliances {
            oven_racks: 1,
            burners: 4,
            microwaves: 1,
        }
    }
}

impl Appliances {
    /// How many of `appliance` the kitchen has.
    pub fn count(&self, appliance: Appliance) -> usize {
        match appliance {
            Appliance::Oven => self.oven_racks,
            Appliance::Burner => self.burners,
            Appliance::Microwave => self.microwaves,
        }
    }
}

/// A validated menu: at least one recipe, each with at least one step, every
/// duration positive, every appliance present in the kitchen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub kitchen: Appliances,
    pub recipes: Vec<Recipe>,
}

/// Where in a menu a problem is: the recipe and, when it is about one step,
/// the step (1-based, and its name when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub recipe: String,
    pub step: Option<(usize, Option<String>)>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recipe {:?}", self.recipe)?;
        match &self.step {
            None => Ok(()),
            Some((n, Some(name))) => write!(f, ", step {n} ({name:?})"),
            Some((n, None)) => write!(f, ", step {n}"),
        }
    }
}

/// Everything that can be wrong with a menu. Each message names the recipe
/// and step, so the cook can find the line to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MenuError {
    #[error("menu is not valid TOML: {0}")]
    Toml(String),
    #[error("menu has no recipes (add a [[recipe]] table)")]
    NoRecipes,
    #[error("menu has {0} recipes; at most {MAX_RECIPES} are allowed")]
    TooManyRecipes(usize),
    #[error("menu: unknown field `{0}` in [kitchen] (expected oven_racks, burners, microwaves)")]
    UnknownKitchenField(String),
    #[error("{0}: missing field `{1}`")]
    Missing(Place, &'static str),
    #[error("{0}: unknown field `{1}`")]
    UnknownField(Place, String),
    #[error("{0}: the name is empty")]
    EmptyName(Place),
    #[error("recipe {0:?} appears twice; recipe names must be unique")]
    DuplicateRecipe(String),
    #[error("{0}: the recipe has no steps")]
    NoSteps(Place),
    #[error("{0}: {1} steps; at most {MAX_STEPS} are allowed")]
    TooManySteps(Place, usize),
    #[error("{0}: unknown kind {1:?} (expected \"hands-on\" or \"wait\")")]
    UnknownKind(Place, String),
    #[error("{0}: unknown appliance {1:?} (expected \"oven\", \"burner\" or \"microwave\")")]
    UnknownAppliance(Place, String),
    #[error("{0}: a waiting step needs an `appliance` (oven, burner or microwave)")]
    WaitWithoutAppliance(Place),
    #[error("{0}: a hands-on step uses the cook, not an appliance; remove `appliance` or make it kind = \"wait\"")]
    HandsOnWithAppliance(Place),
    #[error("{0}: minutes must be more than zero, got {1}")]
    NotPositive(Place, f64),
    #[error("{0}: minutes = {1} is too long (at most {max} minutes)", max = MAX_STEP.as_secs() / 60)]
    TooLong(Place, f64),
    #[error("{0}: needs the {1}, but the kitchen has none (set [kitchen] {field} = 1 or more)", field = kitchen_field(*.1))]
    NoSuchAppliance(Place, Appliance),
}

fn kitchen_field(a: Appliance) -> &'static str {
    match a {
        Appliance::Oven => "oven_racks",
        Appliance::Burner => "burners",
        Appliance::Microwave => "microwaves",
    }
}

// The file as written. Every field is optional and unknown fields are
// collected, so that validation (not serde) reports problems, naming the
// recipe and step instead of only a line number.
#[derive(Deserialize)]
struct RawMenu {
    #[serde(default)]
    kitchen: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    recipe: Vec<RawRecipe>,
}

#[derive(Deserialize)]
struct RawRecipe {
    name: Option<String>,
    #[serde(default)]
    step: Vec<RawStep>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawStep {
    name: Option<String>,
    kind: Option<String>,
    appliance: Option<String>,
    minutes: Option<f64>,
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

impl Menu {
    /// Parses and validates a TOML menu. The first problem found is
    /// returned; recipes are checked in file order, steps in recipe order.
    pub fn from_toml(text: &str) -> Result<Menu, MenuError> {
        let raw: RawMenu = toml::from_str(text).map_err(|e| {
            // toml's message is multi-line (it quotes the source); keep the
            // first line plus the position, which is enough to find it.
            MenuError::Toml(one_line(&e.to_string()))
        })?;
        let kitchen = match raw.kitchen {
            None => Appliances::default(),
            Some(table) => kitchen_from(table)?,
        };
        if raw.recipe.is_empty() {
            return Err(MenuError::NoRecipes);
        }
        if raw.recipe.len() > MAX_RECIPES {
            return Err(MenuError::TooManyRecipes(raw.recipe.len()));
        }
        let mut seen = HashSet::new();
        let mut recipes = Vec::with_capacity(raw.recipe.len());
        for (i, r) in raw.recipe.into_iter().enumerate() {
            let recipe = validate_recipe(i, r, &kitchen)?;
            if !seen.insert(recipe.name.clone()) {
                return Err(MenuError::DuplicateRecipe(recipe.name));
            }
            recipes.push(recipe);
        }
        Ok(Menu { kitchen, recipes })
    }

    /// The talk's dinner, with step durations chosen so that each recipe on
    /// its own takes exactly what the talk says: salmon 20 minutes, rice
    /// pilaf 30, green beans 6; one after the other, 56.
    ///
    /// The talk fixes the long waits (bake 18, simmer 22, stand 5,
    /// microwave 5) and the totals; the short steps share what is left. So
    /// the salmon's 2 spare minutes become a 30-second preheat, a minute of
    /// arranging and 30 seconds of slathering; the rice's 3 spare minutes a
    /// 90-second boil and three 30-second hands-on steps. A real oven takes
    /// longer to preheat; the talk's arithmetic wins here.
    ///
    /// The hands-on steps are what the cook actually does: 4 minutes of 56.
    /// That is why interleaving helps so much and a second cook so little.
    pub fn builtin() -> Menu {
        use Appliance::*;
        fn hands(name: &str, secs: u64) -> Step {
            Step {
                name: name.to_string(),
                need: Need::HandsOn,
                duration: Duration::from_secs(secs),
            }
        }
        fn wait(name: &str, a: Appliance, secs: u64) -> Step {
            Step {
                name: name.to_string(),
                need: Need::Wait(a),
                duration: Duration::from_secs(secs),
            }
        }
        Menu {
            kitchen: Appliances::default(),
            recipes: vec![
                // 0:30 + 1:00 + 0:30 + 18:00 = 20:00
                Recipe {
                    name: "salmon".into(),
                    steps: vec![
                        wait("preheat the oven to 350 °F", Oven, 30),
                        hands("arrange the filets on a baking sheet", 60),
                        hands("slather each filet with orange-ginger dressing", 30),
                        wait("bake", Oven, 18 * 60),
                    ],
                },
                // 0:30 + 1:30 + 0:30 + 22:00 + 0:30 + 5:00 = 30:00
                // The pot stays on its burner from the boil to the end (the
                // talk's code turns the burner off but never moves the pot).
                Recipe {
                    name: "rice".into(),
                    steps: vec![
                        hands("water and butter into the pot", 30),
                        wait("bring to a boil", Burner, 90),
                        hands("stir in spices and rice, cover, set to low", 30),
                        wait("simmer", Burner, 22 * 60),
                        hands("fluff", 30),
                        wait("let stand", Burner, 5 * 60),
                    ],
                },
                // 1:00 + 5:00 = 6:00
                Recipe {
                    name: "beans".into(),
                    steps: vec![
                        hands("poke holes in the bag, put it on a plate", 60),
                        wait("microwave", Microwave, 5 * 60),
                    ],
                },
            ],
        }
    }

    /// The sum of every recipe's own duration: what cooking one recipe after
    /// the other takes.
    pub fn sequential_duration(&self) -> Duration {
        self.recipes.iter().map(Recipe::own_duration).sum()
    }

    /// The longest recipe on its own: no number of cooks beats it.
    pub fn longest_recipe(&self) -> Duration {
        self.recipes
            .iter()
            .map(Recipe::own_duration)
            .max()
            .unwrap_or_default()
    }
}

fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kitchen_from(table: BTreeMap<String, toml::Value>) -> Result<Appliances, MenuError> {
    let mut k = Appliances::default();
    for (key, value) in table {
        let slot = match key.as_str() {
            "oven_racks" => &mut k.oven_racks,
            "burners" => &mut k.burners,
            "microwaves" => &mut k.microwaves,
            _ => return Err(MenuError::UnknownKitchenField(key)),
        };
        *slot = value
            .as_integer()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= 64)
            .ok_or_else(|| {
                MenuError::Toml(format!(
                    "[kitchen] {key} must be a whole number from 0 to 64, got {value}"
                ))
            })?;
    }
    Ok(k)
}

fn validate_recipe(
    index: usize,
    raw: RawRecipe,
    kitchen: &Appliances,
) -> Result<Recipe, MenuError> {
    let name = raw
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    // A recipe without a name is still findable by its position.
    let label = if name.is_empty() {
        format!("#{}", index + 1)
    } else {
        name.clone()
    };
    let place = Place {
        recipe: label.clone(),
        step: None,
    };
    match &raw.name {
        None => return Err(MenuError::Missing(place, "name")),
        Some(_) if name.is_empty() => return Err(MenuError::EmptyName(place)),
        Some(_) => {}
    }
    if let Some(key) = raw.extra.keys().next() {
        return Err(MenuError::UnknownField(place, key.clone()));
    }
    if raw.step.is_empty() {
        return Err(MenuError::NoSteps(place));
    }
    if raw.step.len() > MAX_STEPS {
        return Err(MenuError::TooManySteps(place, raw.step.len()));
    }
    let steps = raw
        .step
        .into_iter()
        .enumerate()
        .map(|(i, s)| validate_step(&label, i, s, kitchen))
        .collect::<Result<_, _>>()?;
    Ok(Recipe { name, steps })
}

fn validate_step(
    recipe: &str,
    index: usize,
    raw: RawStep,
    kitchen: &Appliances,
) -> Result<Step, MenuError> {
    let name = raw
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let place = Place {
        recipe: recipe.to_string(),
        step: Some((index + 1, (!name.is_empty()).then(|| name.clone()))),
    };
    if let Some(key) = raw.extra.keys().next() {
        return Err(MenuError::UnknownField(place, key.clone()));
    }
    match &raw.name {
        None => return Err(MenuError::Missing(place, "name")),
        Some(_) if name.is_empty() => return Err(MenuError::EmptyName(place)),
        Some(_) => {}
    }
    let Some(kind) = raw.kind.as_deref() else {
        return Err(MenuError::Missing(place, "kind"));
    };
    let need = match kind.trim().to_ascii_lowercase().as_str() {
        "hands-on" | "hands_on" | "handson" => {
            if raw.appliance.is_some() {
                return Err(MenuError::HandsOnWithAppliance(place));
            }
            Need::HandsOn
        }
        "wait" => {
            let Some(a) = raw.appliance.as_deref() else {
                return Err(MenuError::WaitWithoutAppliance(place));
            };
            let Some(appliance) = Appliance::parse(a) else {
                return Err(MenuError::UnknownAppliance(place, a.to_string()));
            };
            if kitchen.count(appliance) == 0 {
                return Err(MenuError::NoSuchAppliance(place, appliance));
            }
            Need::Wait(appliance)
        }
        _ => return Err(MenuError::UnknownKind(place, kind.to_string())),
    };
    let Some(minutes) = raw.minutes else {
        return Err(MenuError::Missing(place, "minutes"));
    };
    // TOML allows `nan` and `inf`: NaN is caught here, infinity below.
    if minutes.is_nan() || minutes <= 0.0 {
        return Err(MenuError::NotPositive(place, minutes));
    }
    if minutes * 60.0 > MAX_STEP.as_secs_f64() {
        return Err(MenuError::TooLong(place, minutes));
    }
    // Whole milliseconds: the paused clock's timer has millisecond ticks,
    // and exact totals are what the tests assert.
    let millis = (minutes * 60_000.0).round() as u64;
    if millis == 0 {
        return Err(MenuError::NotPositive(place, minutes));
    }
    Ok(Step {
        name,
        need,
        duration: Duration::from_millis(millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_totals_match_the_talk() {
        let menu = Menu::builtin();
        let own: Vec<u64> = menu
            .recipes
            .iter()
            .map(|r| r.own_duration().as_secs())
            .collect();
        assert_eq!(own, vec![20 * 60, 30 * 60, 6 * 60]);
        assert_eq!(menu.sequential_duration(), Duration::from_secs(56 * 60));
        assert_eq!(menu.longest_recipe(), Duration::from_secs(30 * 60));
        let hands: Duration = menu.recipes.iter().map(Recipe::hands_on).sum();
        assert_eq!(hands, Duration::from_secs(4 * 60));
    }

    #[test]
    fn a_minimal_menu_parses() {
        let menu = Menu::from_toml(
            r#"
            [[recipe]]
            name = "tea"
            [[recipe.step]]
            name = "boil water"
            kind = "wait"
            appliance = "stove"
            minutes = 2.5
            [[recipe.step]]
            name = "steep"
            kind = "hands-on"
            minutes = 0.5
            "#,
        )
        .unwrap();
        assert_eq!(menu.kitchen, Appliances::default());
        let steps = &menu.recipes[0].steps;
        assert_eq!(steps[0].need, Need::Wait(Appliance::Burner));
        assert_eq!(steps[0].duration, Duration::from_secs(150));
        assert_eq!(steps[1].need, Need::HandsOn);
    }

    #[test]
    fn place_names_recipe_and_step() {
        let p = Place {
            recipe: "rice".into(),
            step: Some((2, Some("boil".into()))),
        };
        assert_eq!(p.to_string(), r#"recipe "rice", step 2 ("boil")"#);
    }
}
