// Mixpanel JQL (https://docs.mixpanel.com/docs/reports/apps/jql): one row per user profile
// that has a plan, with the fields a query sync maps (config/local.json "plans-to-brevo").
// `params.plans` (optional): keep only these plan values.
function main() {
  var plans = params && params.plans ? params.plans : null;
  return People()
    .filter(function (user) {
      var plan = user.properties.plan;
      return plan !== undefined && (plans === null || plans.indexOf(plan) >= 0);
    })
    .map(function (user) {
      return { distinct_id: user.distinct_id, plan: user.properties.plan, seats: user.properties.seats };
    });
}
