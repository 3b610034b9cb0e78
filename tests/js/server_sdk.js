// Recombee's server-side Node SDK (recombee-api-client) against a live reqo, signed with a
// database's private token, over every area of the API. Run twice by
// tests/server/test_js_server_sdk.py: `write` builds the catalog, users, interactions, series,
// synonyms and segmentations; the test then trains the models; `read` asks for recommendations,
// searches and segment recommendations. Each phase prints one JSON object: per call, what came
// back ({ok: true, value}) or how it failed ({ok: false, status, message}).
// Usage: node server_sdk.js <write|read> <host:port> <databaseId> <privateToken>
'use strict';
const recombee = require('recombee-api-client');

const rqs = recombee.requests;
const GENRES = ['scifi', 'comedy', 'drama'];
const TITLES = { scifi: 'Star voyage', comedy: 'Funny business', drama: 'Tears of rain' };
const FILMS = 18;
const FANS = 12;
// The SDK gives each request its own timeout (3 s for a recommendation); the test machine is
// shared with other test processes, so a slow answer is not what this test is about.
const TIMEOUT_MS = 60000;

function film(number) {
  return `film-${String(number).padStart(2, '0')}`;
}

function genreOf(number) {
  return GENRES[number % GENRES.length];
}

// What fan u has seen: the films of their genre but every fourth (so that some are left).
function seenBy(user) {
  const seen = [];
  for (let number = user % GENRES.length; number < FILMS; number += GENRES.length) {
    if ((number + user) % 4 !== 0) seen.push(film(number));
  }
  return seen;
}

// A request class by name, with a timeout for a shared machine. The SDK gains requests as
// Recombee's API grows: one that this version lacks is reported as such, not a crash.
function request(name, ...args) {
  const Request = rqs[name];
  if (Request === undefined) return null;
  const built = new Request(...args);
  built.timeout = TIMEOUT_MS;
  return built;
}

function makeSender(client) {
  return async function send(name, ...args) {
    const built = request(name, ...args);
    if (built === null) return { ok: false, status: null, message: `the SDK has no ${name}` };
    try {
      return { ok: true, value: await client.send(built) };
    } catch (error) {
      return { ok: false, status: error.statusCode ?? null, message: String(error.message) };
    }
  };
}

async function write(send) {
  const r = {};
  // Items and item properties.
  r.addItemProperty = await send('AddItemProperty', 'genre', 'string');
  await send('AddItemProperty', 'title', 'string');
  await send('AddItemProperty', 'year', 'int');
  await send('AddItemProperty', 'tags', 'set');
  r.itemPropertyInfo = await send('GetItemPropertyInfo', 'tags');
  r.itemProperties = await send('ListItemProperties');
  for (let number = 0; number < FILMS; number += 1) {
    const genre = genreOf(number);
    const values = { genre, title: `${TITLES[genre]} ${number}`, year: 2000 + number };
    const set = await send('SetItemValues', film(number), values, { cascadeCreate: true });
    if (number === 0) r.setItemValues = set;
  }
  await send('SetItemValues', film(1), { tags: ['classic', 'funny'] });
  r.getItemValues = await send('GetItemValues', film(1));
  r.addItem = await send('AddItem', 'bare');
  r.newItemValues = await send('GetItemValues', 'bare');
  r.listItems = await send('ListItems', { filter: `'genre' == "scifi"` });
  r.listItemsWithValues = await send('ListItems', {
    filter: `'year' >= 2015`,
    returnProperties: true,
    includedProperties: ['year'],
  });
  r.deleteItem = await send('DeleteItem', 'bare');
  r.deletedItem = await send('GetItemValues', 'bare');
  await send('AddItemProperty', 'obsolete', 'double');
  r.deleteItemProperty = await send('DeleteItemProperty', 'obsolete');
  r.deletedItemProperty = await send('GetItemPropertyInfo', 'obsolete');

  // Users and user properties.
  r.addUserProperty = await send('AddUserProperty', 'country', 'string');
  await send('AddUserProperty', 'interests', 'set');
  r.userPropertyInfo = await send('GetUserPropertyInfo', 'country');
  r.setUserValues = await send('SetUserValues', 'tester', { country: 'CZ' }, { cascadeCreate: true });
  r.getUserValues = await send('GetUserValues', 'tester');
  r.addUser = await send('AddUser', 'visitor');
  r.listUsers = await send('ListUsers', { filter: `'country' == "CZ"` });
  r.deleteUser = await send('DeleteUser', 'visitor');
  r.deletedUser = await send('GetUserValues', 'visitor');
  r.deleteUserProperty = await send('DeleteUserProperty', 'interests');
  r.userProperties = await send('ListUserProperties');

  // A batch: what the fans have seen, the users created on the way.
  const views = [];
  for (let user = 0; user < FANS; user += 1) {
    for (const seen of seenBy(user)) {
      const view = request('AddDetailView', `fan-${user}`, seen, { cascadeCreate: true });
      views.push(view);
    }
  }
  r.batch = await send('Batch', views);
  r.batchSize = views.length;

  // Each interaction kind: add, list by user and by item, delete, list again.
  const kinds = [
    ['DetailView', 'DetailViews', film(1), () => send('AddDetailView', 'tester', film(1))],
    ['Purchase', 'Purchases', film(2),
      () => send('AddPurchase', 'tester', film(2), { amount: 2, price: 9.5 })],
    ['Rating', 'Ratings', film(4), () => send('AddRating', 'tester', film(4), 0.5)],
    ['CartAddition', 'CartAdditions', film(5), () => send('AddCartAddition', 'tester', film(5))],
    ['Bookmark', 'Bookmarks', film(7), () => send('AddBookmark', 'tester', film(7))],
  ];
  r.interactions = {};
  for (const [kind, plural, item, add] of kinds) {
    r.interactions[kind] = {
      add: await add(),
      byUser: await send(`ListUser${plural}`, 'tester'),
      byItem: await send(`ListItem${plural}`, item),
      delete: await send(`Delete${kind}`, 'tester', item),
      afterDelete: await send(`ListUser${plural}`, 'tester'),
    };
  }
  r.interactions.ViewPortion = {
    add: await send('SetViewPortion', 'tester', film(8), 0.25, { sessionId: 's-1' }),
    byUser: await send('ListUserViewPortions', 'tester'),
    byItem: await send('ListItemViewPortions', film(8)),
    delete: await send('DeleteViewPortion', 'tester', film(8), { sessionId: 's-1' }),
    afterDelete: await send('ListUserViewPortions', 'tester'),
  };

  // Merge users: an anonymous visitor's history moves to the signed-in user.
  await send('AddDetailView', 'anonymous', film(10), { cascadeCreate: true });
  r.mergeUsers = await send('MergeUsers', 'tester', 'anonymous');
  r.mergedViews = await send('ListUserDetailViews', 'tester');
  r.mergedSource = await send('GetUserValues', 'anonymous');

  // Series (without the item of the same id that cascadeCreate would add to the catalog).
  r.addSeries = await send('AddSeries', 'saga', { cascadeCreate: false });
  r.insertToSeries = await send('InsertToSeries', 'saga', 'item', film(0), 1);
  await send('InsertToSeries', 'saga', 'item', film(6), 3);
  await send('InsertToSeries', 'saga', 'item', film(3), 2);
  r.listSeries = await send('ListSeries');
  r.listSeriesItems = await send('ListSeriesItems', 'saga');
  r.removeFromSeries = await send('RemoveFromSeries', 'saga', 'item', film(3));
  r.seriesItemsAfterRemove = await send('ListSeriesItems', 'saga');
  r.deleteSeries = await send('DeleteSeries', 'saga');
  r.seriesAfterDelete = await send('ListSeries');

  // Search synonyms (the read phase searches with the one kept).
  r.addSearchSynonym = await send('AddSearchSynonym', 'space', 'star', { oneWay: true });
  const second = await send('AddSearchSynonym', 'laugh', 'funny');
  r.listSearchSynonyms = await send('ListSearchSynonyms');
  r.deleteSearchSynonym = second.ok
    ? await send('DeleteSearchSynonym', second.value.id)
    : second;
  r.synonymsAfterDelete = await send('ListSearchSynonyms');

  // Segmentations: property-based, auto-ReQL and manual-ReQL, with their segments.
  r.createPropertyBasedSegmentation = await send(
    'CreatePropertyBasedSegmentation', 'genres', 'items', 'genre', { title: 'Genres' });
  r.updatePropertyBasedSegmentation = await send(
    'UpdatePropertyBasedSegmentation', 'genres', { description: 'By genre' });
  r.createAutoReqlSegmentation = await send(
    'CreateAutoReqlSegmentation', 'eras', 'items', `if 'year' < 2010 then "older" else "newer"`);
  r.updateAutoReqlSegmentation = await send(
    'UpdateAutoReqlSegmentation', 'eras', { title: 'Eras' });
  r.createManualReqlSegmentation = await send(
    'CreateManualReqlSegmentation', 'rows', 'items', { title: 'Rows' });
  r.addManualReqlSegment = await send(
    'AddManualReqlSegment', 'rows', 'space', `'genre' == "scifi"`, { title: 'Space' });
  await send('AddManualReqlSegment', 'rows', 'everything', 'true');
  r.updateManualReqlSegment = await send(
    'UpdateManualReqlSegment', 'rows', 'space', `'genre' != "drama"`);
  r.deleteManualReqlSegment = await send('DeleteManualReqlSegment', 'rows', 'everything');
  r.updateManualReqlSegmentation = await send(
    'UpdateManualReqlSegmentation', 'rows', { description: 'Home rows' });
  r.getSegmentation = await send('GetSegmentation', 'rows');
  r.deleteSegmentation = await send('DeleteSegmentation', 'eras');
  r.listSegmentations = await send('ListSegmentations', 'items');
  r.deletedSegmentation = await send('GetSegmentation', 'eras');

  // Many items at once: a filter's items changed, then deleted.
  await send('SetItemValues', 'old-1', { year: 1950 }, { cascadeCreate: true });
  await send('SetItemValues', 'old-2', { year: 1955 }, { cascadeCreate: true });
  r.updateMoreItems = await send('UpdateMoreItems', `'year' < 1960`, { tags: ['vintage'] });
  r.deleteMoreItems = await send('DeleteMoreItems', `"vintage" in 'tags'`);

  r.listScenarios = await send('ListScenarios');
  return r;
}

async function read(send) {
  const r = {};
  const recommended = await send('RecommendItemsToUser', 'fan-0', 2, {
    returnProperties: true,
    includedProperties: ['genre'],
  });
  r.itemsToUser = recommended;
  r.nextItems = recommended.ok
    ? await send('RecommendNextItems', recommended.value.recommId, 2)
    : recommended;
  r.itemsToItem = await send('RecommendItemsToItem', film(3), 'fan-0', 3);
  r.usersToItem = await send('RecommendUsersToItem', film(3), 3);
  r.usersToUser = await send('RecommendUsersToUser', 'fan-0', 3);
  // "space" finds the "Star voyage" films through the one-way synonym space -> star.
  r.searchItems = await send('SearchItems', 'fan-1', 'space', 5);
  r.batch = await send('Batch', [
    request('RecommendItemsToUser', 'fan-1', 2),
    request('SearchItems', 'fan-1', 'funny', 2),
  ]);
  r.deleteAllSearchSynonyms = await send('DeleteAllSearchSynonyms');
  r.synonymsAfterDeleteAll = await send('ListSearchSynonyms');
  r.searchWithoutSynonyms = await send('SearchItems', 'fan-1', 'space', 5);

  // Segment recommendations, over the segmentation `genres` that the write phase created and
  // the scenarios the test configured for it.
  const segments = await send('RecommendItemSegmentsToUser', 'fan-0', 2, { scenario: 'genres' });
  r.itemSegmentsToUser = segments;
  r.nextItemSegments = segments.ok
    ? await send('RecommendNextItemSegments', segments.value.recommId, 1)
    : segments;
  r.itemSegmentsToItem = await send(
    'RecommendItemSegmentsToItem', film(4), 'fan-1', 2, { scenario: 'film-genres' });
  r.itemSegmentsToItemSegment = await send(
    'RecommendItemSegmentsToItemSegment', 'scifi', 'fan-1', 2, { scenario: 'related-genres' });
  r.itemsToItemSegment = await send(
    'RecommendItemsToItemSegment', 'comedy', 'fan-0', 3, { scenario: 'genre-films' });
  r.searchItemSegments = await send(
    'SearchItemSegments', 'fan-1', 'star', 2, { scenario: 'genre-search' });
  r.composite = await send('CompositeRecommendation', 'row', 2, { userId: 'fan-0' });
  return r;
}

async function main() {
  const [phase, baseUri, database, token] = process.argv.slice(2);
  // The SDK prefers $RAPI_URI to its baseUri option; only the server under test will do.
  delete process.env.RAPI_URI;
  const client = new recombee.ApiClient(database, token, { baseUri, protocol: 'https' });
  const send = makeSender(client);
  const phases = { write, read };
  if (!(phase in phases)) throw new Error(`unknown phase ${phase}: write or read`);
  console.log(JSON.stringify(await phases[phase](send)));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
