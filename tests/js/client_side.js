// Recombee's client-side SDK against a live reqo: every call a browser page would make with a
// database's public token, and one it may not make. Prints one JSON line of what came back.
// Usage: node client_side.js <host:port> <databaseId> <publicToken>
'use strict';
const recombee = require('recombee-js-api-client');

async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, status: error.statusCode, message: String(error.message) };
  }
}

async function main() {
  const [baseUri, database, token] = process.argv.slice(2);
  const client = new recombee.ApiClient(database, token, { baseUri, useHttps: true });
  const results = {};
  results.view = await outcome(client.send(new recombee.AddDetailView('visitor', 'film-1', { cascadeCreate: true })));
  results.purchase = await outcome(client.send(new recombee.AddPurchase('visitor', 'film-2', { cascadeCreate: true })));
  results.rating = await outcome(client.send(new recombee.AddRating('visitor', 'film-3', 0.5, { cascadeCreate: true })));
  results.portion = await outcome(client.send(new recombee.SetViewPortion('visitor', 'film-1', 0.4, { cascadeCreate: true })));
  const recommended = await outcome(client.send(new recombee.RecommendItemsToUser('visitor', 3, { cascadeCreate: true })));
  results.recommend = recommended;
  if (recommended.ok) {
    results.next = await outcome(client.send(new recombee.RecommendNextItems(recommended.value.recommId, 2)));
  }
  results.similar = await outcome(client.send(new recombee.RecommendItemsToItem('film-1', 'visitor', 2)));
  results.search = await outcome(client.send(new recombee.SearchItems('visitor', 'star', 3)));
  results.batch = await outcome(client.send(new recombee.Batch([
    new recombee.AddBookmark('visitor', 'film-4', { cascadeCreate: true }),
    new recombee.RecommendItemsToUser('visitor', 2),
  ])));
  const segments = await outcome(client.send(new recombee.RecommendItemSegmentsToUser('visitor', 2, { scenario: 'top-kinds' })));
  results.segments = segments;
  if (segments.ok) {
    results.nextSegments = await outcome(client.send(new recombee.RecommendNextItemSegments(segments.value.recommId, 1)));
  }
  results.searchSegments = await outcome(client.send(new recombee.SearchItemSegments('visitor', 'star', 2, { scenario: 'kind-search' })));
  results.composite = await outcome(client.send(new recombee.CompositeRecommendation('kind-row', 2, { userId: 'visitor' })));
  results.merge = await outcome(client.send(new recombee.MergeUsers('visitor', 'someone-else')));
  console.log(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
