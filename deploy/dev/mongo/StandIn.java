/*
 * The local MongoDB stand-in: mongo-java-server on its H2 backend (data in one
 * file, so it survives a restart) with the oplog enabled, which the bundled
 * main()s leave off and which change streams need.
 *
 * One change to how it answers, so that it costs what a real MongoDB does:
 * a filter that names `_id` (one value, or `$in` a list of them) next to
 * other fields is answered from the `_id` index, the other fields checked
 * on the documents found. mongo-java-server uses an index only when the
 * filter's fields are exactly the index's, so every claim, finish and
 * lease renewal (`_id` plus `status`, the holder…) scanned the whole
 * collection, and grew slower with it. Which documents match is unchanged:
 * every document the filter matches has one of those `_id`s.
 *
 * Usage: java -cp '<lib>/*:<classes>' StandIn <h2-file> <host> <port>
 */
import java.util.Collection;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.bson.ObjectId;

public class StandIn {
        /* The one MVStore of this process; H2Database keeps its own
         * private, and its constructor opens collections before a
         * subclass could keep a copy. */
        private static MVStore store;

        /* A value the _id index can look up exactly. */
        private static boolean plain(Object v) {
                return v instanceof ObjectId || v instanceof String
                       || v instanceof Number;
        }

        /* An _id condition answered by looking up its value(s). */
        private static boolean byId(Object id) {
                if (plain(id))
                        return true;
                if (!(id instanceof Document d) || d.size() != 1
                    || !(d.get("$in") instanceof Collection<?> in))
                        return false;
                for (Object v : in)
                        if (!plain(v))
                                return false;
                return true;
        }

        static final class IdCollection extends H2Collection {
                IdCollection(MongoDatabase db, String name,
                             CollectionOptions options,
                             MVMap<Object, Document> data,
                             MVMap<String, Object> meta,
                             CursorRegistry cursors) {
                        super(db, name, options, data, meta, cursors);
                }

                @Override
                protected QueryResult queryDocuments(Document query,
                                                     Document orderBy,
                                                     int skip, int limit,
                                                     int batchSize,
                                                     Document fields) {
                        Object id = query.get("_id");
                        if (query.size() > 1 && byId(id)) {
                                Document key = new Document("_id", id);
                                for (Index<Object> index : getIndexes())
                                        if (index.canHandle(key))
                                                return matchDocuments(
                                                    query,
                                                    index.getPositions(key),
                                                    orderBy, skip, limit,
                                                    batchSize, fields);
                        }
                        return super.queryDocuments(query, orderBy, skip,
                                                    limit, batchSize, fields);
                }
        }

        static final class IdDatabase extends H2Database {
                IdDatabase(String name, CursorRegistry cursors) {
                        super(name, store, cursors);
                }

                /* H2Database's own, with the collection above. */
                @Override
                protected MongoCollection<Object> openOrCreateCollection(
                    String name, CollectionOptions options) {
                        String full = getFullCollectionNamespace(name);
                        MVMap<Object, Document> data =
                            store.openMap("databases." + full);
                        MVMap<String, Object> meta =
                            store.openMap("meta." + full);
                        return new IdCollection(this, name, options, data,
                                                meta, cursorRegistry);
                }
        }

        static final class IdBackend extends H2Backend {
                IdBackend(MVStore s) {
                        super(s);
                }

                @Override
                protected MongoDatabase openOrCreateDatabase(String name) {
                        return new IdDatabase(name, getCursorRegistry());
                }
        }

        public static void main(String[] args) {
                store = MVStore.open(args[0]);
                MongoServer server = new MongoServer(new IdBackend(store));
                server.enableOplog();
                /* shutdownNow() closes the backend, which flushes H2. */
                Runtime.getRuntime().addShutdownHook(
                        new Thread(server::shutdownNow));
                server.bind(args[1], Integer.parseInt(args[2]));
                System.out.println("StandIn ready on " + args[1] + ":" + args[2]
                                   + " (" + args[0] + ")");
        }
}
