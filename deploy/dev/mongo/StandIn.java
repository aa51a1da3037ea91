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
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Queue;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.util.concurrent.ScheduledFuture;
import org.h2.mvstore.Cursor;
import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;
import org.h2.mvstore.WriteBuffer;
import org.h2.mvstore.type.BasicDataType;
import org.h2.mvstore.type.ObjectDataType;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.AbstractCursor;
import de.bwaldvogel.mongo.backend.ArrayFilters;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.Utils;
import de.bwaldvogel.mongo.backend.ValueComparator;
import de.bwaldvogel.mongo.backend.h2.H2UniqueIndex;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.bson.ObjectId;
import de.bwaldvogel.mongo.exception.MongoServerError;
import de.bwaldvogel.mongo.oplog.Oplog;
import de.bwaldvogel.mongo.wire.MongoDatabaseHandler;
import de.bwaldvogel.mongo.wire.bson.BsonDecoder;
import de.bwaldvogel.mongo.wire.bson.BsonEncoder;
import de.bwaldvogel.mongo.wire.MongoExceptionHandler;
import de.bwaldvogel.mongo.wire.MongoWireMessageEncoder;
import de.bwaldvogel.mongo.wire.MongoWireProtocolHandler;
import de.bwaldvogel.mongo.wire.MongoWireReplyEncoder;
import de.bwaldvogel.mongo.wire.message.ClientRequest;
import de.bwaldvogel.mongo.wire.message.MessageHeader;
import de.bwaldvogel.mongo.wire.message.MongoMessage;

public class StandIn {
        /* The one MVStore of this process; H2Database keeps its own
         * private, and its constructor opens collections before a
         * subclass could keep a copy. */
        private static MVStore store;
        /* The backend's oplog, for the collections' findAndModify. */
        private static Oplog changes;

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

                /*
                 * A stored document is never an object anyone else holds
                 * or changes. H2 keeps the objects put into a map in its
                 * pages and serializes them on its own thread when it
                 * writes a page; mongo-java-server's update changes the
                 * stored object itself, key by key, before it puts it back
                 * (and puts objects it was handed), so an update raced
                 * that write (a ConcurrentModificationException that
                 * failed the store and every write after it) and an
                 * update refused halfway left half of it applied. Updates
                 * now work on copies (queryDocuments below), which are
                 * then what is put, and an inserted document is copied;
                 * MongoDB copies at both ends too.
                 */
                private boolean copying; /* under the collection's lock */

                @Override
                protected Object addDocumentInternal(Document d) {
                        return super.addDocumentInternal(d.cloneDeeply());
                }

                /* Runs an update with the documents it finds copied. */
                private synchronized Document onCopies(Supplier<Document> f) {
                        boolean was = copying;
                        copying = true;
                        try {
                                return f.get();
                        } finally {
                                copying = was;
                        }
                }

                @Override
                public synchronized Document updateDocuments(
                    Document selector, Document update, ArrayFilters filters,
                    boolean multi, boolean upsert, Oplog oplog) {
                        return onCopies(() -> super.updateDocuments(
                                           selector, update, filters, multi,
                                           upsert, oplog));
                }

                /* The documents a query found, copied while an update runs. */
                private QueryResult copied(QueryResult r) {
                        if (!copying)
                                return r;
                        List<Document> out = new ArrayList<>();
                        for (Document d : r)
                                out.add(d.cloneDeeply());
                        return new QueryResult(out, r.getCursorId());
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
                                                return copied(matchDocuments(
                                                    query,
                                                    index.getPositions(key),
                                                    orderBy, skip, limit,
                                                    batchSize, fields));
                        }
                        return copied(super.queryDocuments(
                            query, orderBy, skip, limit, batchSize, fields));
                }

                /* mongo-java-server's findAndModify writes no oplog entry,
                 * so a change stream never saw a claim, a finish or a
                 * release; MongoDB logs them like any update. The document
                 * it will modify is the first its query and sort find;
                 * the collection's lock (reentrant) keeps that the same
                 * one across both calls. */
                @Override
                public synchronized Document findAndModify(Document cmd) {
                        Document q = cmd.get("query") instanceof Document d
                            ? d : new Document();
                        Document sort = cmd.get("sort") instanceof Document d
                            ? d : null;
                        Object id = null;
                        for (Document d : queryDocuments(q, sort, 0, 1, 0,
                                                         null))
                                id = d.get("_id");
                        Document reply =
                            onCopies(() -> super.findAndModify(cmd));
                        String ns = getFullName();
                        boolean removed = Utils.isTrue(cmd.get("remove"));
                        if (id != null && removed
                            && reply.get("value") != null)
                                changes.handleDelete(ns, q, List.of(id));
                        else if (id != null && !removed)
                                changes.handleUpdate(
                                    ns, q, (Document)cmd.get("update"),
                                    List.of(id));
                        else if (id == null && !removed
                                 && Utils.isTrue(cmd.get("upsert"))
                                 && byIdValue(q, reply) != null)
                                for (Document d : queryDocuments(
                                         new Document("_id",
                                                      byIdValue(q, reply)),
                                         null, 0, 1, 0, null))
                                        changes.handleInsert(ns, List.of(d));
                        return reply;
                }

                /* The _id of a document an upsert made, when it can be
                 * known: from the returned document or the query. */
                private static Object byIdValue(Document q, Document reply) {
                        if (reply.get("value") instanceof Document v
                            && v.get("_id") != null)
                                return v.get("_id");
                        return plain(q.get("_id")) ? q.get("_id") : null;
                }
        }

        /*
         * The order of a unique index's keys. H2 orders keys of a type it
         * does not know (mongo-java-server's KeyValue) by comparing their
         * Java serializations, so every step of every index lookup
         * serialized two keys: a profile of the stand-in under claims had
         * Java serialization as its largest cost. Keys are ordered here by
         * value, element by element, with mongo-java-server's own
         * comparison (1 and 1.0 are then one key, as in MongoDB). A data
         * file whose indexes were ordered the old way is refused at start
         * (main).
         */
        static final class KeyOrder extends ObjectDataType {
                private static final java.util.Comparator<Object> VALUES =
                    ValueComparator.asc();

                @Override
                public int compare(Object a, Object b) {
                        if (!(a instanceof KeyValue x)
                            || !(b instanceof KeyValue y))
                                return super.compare(a, b);
                        int n = Math.min(x.size(), y.size());
                        for (int i = 0; i < n; i++) {
                                int c = VALUES.compare(x.get(i), y.get(i));
                                if (c != 0)
                                        return c;
                        }
                        return Integer.compare(x.size(), y.size());
                }
        }

        /*
         * Documents kept as BSON. H2 stores values of a type it does not
         * know by Java serialization, and writes and reads whole pages of
         * them: a profile under claims, once the indexes were fixed, had
         * serializing and deserializing documents as the stand-in's
         * largest cost. MongoDB keeps BSON; so does this.
         */
        static final class Bson extends BasicDataType<Document> {
                static final Bson TYPE = new Bson();

                @Override
                public Document[] createStorage(int n) {
                        return new Document[n];
                }

                @Override
                public int getMemory(Document d) {
                        return 64 + 48 * d.size();
                }

                @Override
                public void write(WriteBuffer out, Document d) {
                        ByteBuf buf = Unpooled.buffer();
                        try {
                                BsonEncoder.encodeDocument(d, buf);
                                out.put(buf.nioBuffer());
                        } finally {
                                buf.release();
                        }
                }

                @Override
                public Document read(ByteBuffer in) {
                        /* A BSON document starts with its length (LE). */
                        int len = Integer.reverseBytes(in.getInt(in.position()));
                        ByteBuffer one = in.slice();
                        one.limit(len);
                        in.position(in.position() + len);
                        return BsonDecoder.decodeBson(Unpooled.wrappedBuffer(one));
                }
        }

        static final class IdDatabase extends H2Database {
                IdDatabase(String name, CursorRegistry cursors) {
                        super(name, store, cursors);
                }

                /* H2Database's own, with the key order above. */
                @Override
                protected Index<Object> openOrCreateUniqueIndex(
                    String collection, String index, List<IndexKey> keys,
                    boolean sparse) {
                        MVMap<KeyValue, Object> map = store.openMap(
                            getFullCollectionNamespace(collection) + "._index_"
                                + index,
                            new MVMap.Builder<KeyValue, Object>().keyType(
                                new KeyOrder()));
                        try {
                                /* Its constructor is package-private. */
                                var make =
                                    H2UniqueIndex.class.getDeclaredConstructor(
                                        MVMap.class, String.class, List.class,
                                        boolean.class);
                                make.setAccessible(true);
                                @SuppressWarnings("unchecked")
                                Index<Object> made = (Index<Object>)make.newInstance(
                                    map, index, keys, sparse);
                                return made;
                        } catch (ReflectiveOperationException e) {
                                throw new IllegalStateException(e);
                        }
                }

                /* H2Database's own, with the collection above. */
                @Override
                protected MongoCollection<Object> openOrCreateCollection(
                    String name, CollectionOptions options) {
                        String full = getFullCollectionNamespace(name);
                        MVMap<Object, Document> data = store.openMap(
                            "databases." + full,
                            new MVMap.Builder<Object, Document>().valueType(
                                Bson.TYPE));
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

                @Override
                protected Oplog createOplog() {
                        changes = new SeekOplog(this, getCursorRegistry());
                        return changes;
                }
        }

        /*
         * The oplog, kept in its own map ordered by timestamp, so a change
         * stream reads from its position on, as MongoDB reads its oplog.
         * mongo-java-server's keeps it as a collection and, on every
         * getMore, scans and sorts all of it and looks each updated
         * document up by scanning its collection: a getMore cost grew
         * with everything ever written (the tests deleted their entries
         * and stopped producers early to keep the stand-in usable). Like
         * MongoDB's, this one is capped (standin.oplog.max entries,
         * default 500000): a stream resumed from before the oldest entry
         * fails with ChangeStreamHistoryLost (286).
         *
         * Events have mongo-java-server's shape: _id {_data: the
         * timestamp in hex}, operationType, fullDocument (updateLookup:
         * the document now, null when gone), documentKey, clusterTime.
         */
        static final class SeekOplog implements Oplog {
                private static final long MAX =
                    Long.getLong("standin.oplog.max", 500000);
                private final MongoBackend backend;
                private final CursorRegistry cursors;
                private final MVMap<Long, Document> log;
                private final MVMap<String, Long> meta;
                private final UUID ui = UUID.randomUUID();
                private long last; /* the newest timestamp handed out */
                private long writes;

                SeekOplog(MongoBackend backend, CursorRegistry cursors) {
                        this.backend = backend;
                        this.cursors = cursors;
                        log = store.openMap(
                            "standin.oplog",
                            new MVMap.Builder<Long, Document>().valueType(
                                Bson.TYPE));
                        meta = store.openMap("standin.oplog.meta");
                        Long k = log.lastKey();
                        last = k == null ? meta.getOrDefault("floor", 0L) : k;
                }

                /* Timestamp and write under one lock: a reader that sees
                 * an entry sees every older one. The entry holds copies,
                 * never the caller's objects (see IdCollection). */
                private synchronized void append(String op, String ns,
                                                 Document o, Document o2) {
                        long now = backend.getClock().instant()
                                       .getEpochSecond() << 32;
                        last = Math.max(last + 1, now | 1);
                        Document e = new Document("ts", new BsonTimestamp(last))
                                         .append("t", 1L).append("h", 0L)
                                         .append("v", 2L).append("op", op)
                                         .append("ns", ns).append("ui", ui)
                                         .append("wall", backend.getClock()
                                                             .instant())
                                         .append("o", o.cloneDeeply());
                        if (o2 != null)
                                e.append("o2", o2.cloneDeeply());
                        log.put(last, e);
                        if (++writes % 1024 == 0)
                                trim();
                }

                private void trim() {
                        long over = log.sizeAsLong() - MAX;
                        Long k = null;
                        for (; over > 0 && (k = log.firstKey()) != null;
                             over--)
                                log.remove(k);
                        if (k != null)
                                meta.put("floor", k);
                }

                private static boolean skip(String ns) {
                        return ns.startsWith("local.");
                }

                @Override
                public void handleInsert(String ns, List<Document> docs) {
                        if (!skip(ns))
                                for (Document d : docs)
                                        append("i", ns, d, null);
                }

                @Override
                public void handleUpdate(String ns, Document selector,
                                         Document update, List<Object> ids) {
                        if (!skip(ns))
                                for (Object id : ids)
                                        append("u", ns, update,
                                               new Document("_id", id));
                }

                @Override
                public void handleDelete(String ns, Document selector,
                                         List<Object> ids) {
                        if (!skip(ns))
                                for (Object id : ids)
                                        append("d", ns, new Document("_id", id),
                                               null);
                }

                @Override
                public void handleDropCollection(String ns) {
                        int dot = ns.indexOf('.');
                        if (!skip(ns))
                                append("c", ns.substring(0, dot) + ".$cmd",
                                       new Document("drop",
                                                    ns.substring(dot + 1)),
                                       null);
                }

                @Override
                public de.bwaldvogel.mongo.backend.Cursor createCursor(
                    Document stream, String ns, Aggregation stages) {
                        long from;
                        Object token = stream.get("startAfter") != null
                                           ? stream.get("startAfter")
                                           : stream.get("resumeAfter");
                        if (token instanceof Document t) {
                                from = Long.parseLong((String)t.get("_data"),
                                                      16) + 1;
                                Long floor = meta.get("floor");
                                if (floor != null && from <= floor)
                                        throw new MongoServerError(
                                            286, "ChangeStreamHistoryLost",
                                            "the resume point is no longer "
                                                + "in the oplog");
                        } else if (stream.get("startAtOperationTime")
                                   instanceof BsonTimestamp ts) {
                                from = ts.getValue();
                        } else {
                                synchronized (this) {
                                        from = last + 1;
                                }
                        }
                        SeekCursor c = new SeekCursor(
                            cursors.generateCursorId(), this, stream, ns,
                            stages, from);
                        cursors.add(c);
                        return c;
                }

                /* The event an oplog entry is to a change stream. */
                Document event(Document stored, Document stream) {
                        Document e = stored.cloneDeeply(); /* as above */
                        BsonTimestamp ts = (BsonTimestamp)e.get("ts");
                        Document id = new Document(
                            "_data", Long.toHexString(ts.getValue()));
                        Document o = (Document)e.get("o");
                        String op = (String)e.get("op");
                        if (op.equals("c"))
                                return new Document("_id", id)
                                    .append("operationType",
                                            o.keySet().iterator().next())
                                    .append("clusterTime", ts);
                        Document ev = new Document("_id", id);
                        switch (op) {
                        case "i":
                                ev.append("operationType", "insert")
                                    .append("fullDocument", o)
                                    .append("documentKey",
                                            new Document("_id", o.get("_id")));
                                break;
                        case "u":
                                ev.append("operationType", "update")
                                    .append("fullDocument",
                                            "updateLookup".equals(
                                                stream.get("fullDocument"))
                                                ? current((String)e.get("ns"),
                                                          (Document)e.get("o2"))
                                                : delta(o))
                                    .append("documentKey", e.get("o2"));
                                break;
                        default:
                                ev.append("operationType", "delete")
                                    .append("fullDocument", null)
                                    .append("documentKey", o);
                        }
                        return ev.append("clusterTime", ts);
                }

                /* The document as it is now, found by _id; null if gone. */
                private Document current(String ns, Document key) {
                        int dot = ns.indexOf('.');
                        MongoCollection<?> c =
                            backend.resolveDatabase(ns.substring(0, dot))
                                .resolveCollection(ns.substring(dot + 1),
                                                   false);
                        if (c == null)
                                return null;
                        for (Document d : c.handleQuery(key))
                                return d.cloneDeeply();
                        return null;
                }

                private static Document delta(Document update) {
                        Document d = new Document();
                        if (update.get("$set") instanceof Document set)
                                d.appendAll(set);
                        if (update.get("$unset") instanceof Document unset)
                                d.appendAll(unset);
                        return d;
                }
        }

        /* A change stream's cursor: the next timestamp to read, and the
         * stream's own stages ($match) applied to the events from there. */
        static final class SeekCursor extends AbstractCursor {
                private final SeekOplog oplog;
                private final Document stream;
                private final String ns;
                private final String cmdNs;
                private final Aggregation stages;
                private long from;

                SeekCursor(long id, SeekOplog oplog, Document stream,
                           String ns, Aggregation stages, long from) {
                        super(id);
                        this.oplog = oplog;
                        this.stream = stream;
                        this.ns = ns;
                        this.cmdNs = ns.substring(0, ns.indexOf('.')) + ".$cmd";
                        this.stages = stages;
                        this.from = from;
                }

                @Override
                public boolean isEmpty() {
                        return false; /* a change stream stays open */
                }

                @Override
                public synchronized List<Document> takeDocuments(int n) {
                        Cursor<Long, Document> it = oplog.log.cursor(from);
                        long[] seen = {from - 1};
                        Iterator<Document> entries = new Iterator<>() {
                                public boolean hasNext() {
                                        return it.hasNext();
                                }

                                public Document next() {
                                        seen[0] = it.next();
                                        return it.getValue();
                                }
                        };
                        Stream<Document> events =
                            StreamSupport
                                .stream(((Iterable<Document>)() -> entries)
                                            .spliterator(),
                                        false)
                                .filter(e -> ns.equals(e.get("ns"))
                                             || cmdNs.equals(e.get("ns")))
                                .map(e -> oplog.event(e, stream));
                        events = stages.runStagesAsStream(events);
                        if (n > 0)
                                events = events.limit(n);
                        List<Document> out = new ArrayList<>();
                        events.forEachOrdered(out::add);
                        /* Short of n: every entry up to the newest was read
                         * and nothing there is wanted again. Otherwise go
                         * on after the last event returned (the stages may
                         * have read ahead of it). */
                        if (n > 0 && out.size() == n)
                                from = Long.parseLong(
                                           (String)((Document)out.get(n - 1)
                                                        .get("_id"))
                                               .get("_data"),
                                           16) + 1;
                        else
                                from = seen[0] + 1;
                        return out;
                }
        }

        /*
         * getMore on a change stream waits, as MongoDB's does, for up to
         * the maxTimeMS the client gives (its maxAwaitTimeMS) until the
         * stream has something, instead of answering an empty batch at
         * once. Without the wait a client polls: the producer backed off
         * up to producer.idle.max_wait between polls, which put up to that
         * much on an idle signal's way to Kafka, and each poll rescans the
         * oplog. The wait holds no thread: an empty answer parks the
         * request, and every other request handled (any write) retries the
         * parked ones on their own channels' event loops; a timer answers
         * at the deadline with whatever is there then.
         */
        static final class AwaitHandler extends MongoDatabaseHandler {
                private static final Queue<Parked> parked =
                    new ConcurrentLinkedQueue<>();
                /* Bumped after every request that may have written: a
                 * retry that read the oplog before such a write saw the
                 * count change when it parks, and goes again. (Bumping it
                 * only when something was parked lost the write that came
                 * while the one parked request was being retried: it then
                 * waited for the next write, 70 ms at the p99.) */
                private static final AtomicLong writes = new AtomicLong();
                private static final AtomicInteger replies =
                    new AtomicInteger();
                private final MongoBackend backend;

                private static final class Parked {
                        final ChannelHandlerContext ctx;
                        final MongoMessage msg;
                        final long deadline;
                        ScheduledFuture<?> timer;
                        boolean done;

                        Parked(ChannelHandlerContext ctx, MongoMessage msg,
                               long deadline) {
                                this.ctx = ctx;
                                this.msg = msg;
                                this.deadline = deadline;
                        }
                }

                AwaitHandler(MongoBackend backend, ChannelGroup channels) {
                        super(backend, channels);
                        this.backend = backend;
                }

                /* The maxTimeMS of a getMore, or 0 for any other request. */
                private static long awaitMs(ClientRequest req) {
                        if (!(req instanceof MongoMessage m))
                                return 0;
                        Document d = m.getDocument();
                        if (d.isEmpty() || !"getMore".equalsIgnoreCase(
                                               d.keySet().iterator().next()))
                                return 0;
                        return d.get("maxTimeMS") instanceof Number n
                            ? n.longValue() : 0;
                }

                /* An open cursor that answered nothing. */
                private static boolean empty(Document reply) {
                        return reply.get("cursor") instanceof Document c
                            && c.get("nextBatch") instanceof List<?> b
                            && b.isEmpty() && c.get("id") instanceof Number id
                            && id.longValue() != 0;
                }

                private static void wake() {
                        for (Parked p; (p = parked.poll()) != null;) {
                                final Parked q = p;
                                q.ctx.executor().execute(() -> retry(q));
                        }
                }

                private static void reply(Parked p, Document d) {
                        p.done = true;
                        if (p.timer != null)
                                p.timer.cancel(false);
                        MessageHeader h = new MessageHeader(
                            replies.incrementAndGet(),
                            p.msg.getHeader().getRequestID());
                        p.ctx.channel().writeAndFlush(
                            new MongoMessage(p.ctx.channel(), h, d));
                }

                /* On p's event loop: answer p if there is something or its
                 * time is up (last: the timer), else park it (again). */
                private static void retry(Parked p) {
                        retry(p, false);
                }

                private static void retry(Parked p, boolean last) {
                        if (p.done)
                                return;
                        AwaitHandler self =
                            (AwaitHandler)p.ctx.handler();
                        long seen = writes.get();
                        Document d;
                        try {
                                d = self.backend.handleMessage(p.msg);
                        } catch (RuntimeException e) {
                                /* The stock path answers with the error. */
                                p.done = true;
                                if (p.timer != null)
                                        p.timer.cancel(false);
                                self.stock(p.ctx, p.msg);
                                return;
                        }
                        if (last || !empty(d) || System.nanoTime() >= p.deadline) {
                                reply(p, d);
                                return;
                        }
                        if (p.timer == null)
                                p.timer = p.ctx.executor().schedule(
                                    () -> retry(p, true),
                                    p.deadline - System.nanoTime(),
                                    TimeUnit.NANOSECONDS);
                        parked.add(p);
                        if (writes.get() != seen)
                                wake();
                }

                private void stock(ChannelHandlerContext ctx,
                                   ClientRequest req) {
                        try {
                                super.channelRead0(ctx, req);
                        } catch (RuntimeException e) {
                                ctx.fireExceptionCaught(e);
                        }
                }

                @Override
                protected void channelRead0(ChannelHandlerContext ctx,
                                            ClientRequest req) {
                        long ms = awaitMs(req);
                        if (ms > 0) {
                                retry(new Parked(
                                    ctx, (MongoMessage)req,
                                    System.nanoTime() + ms * 1000000L));
                                return;
                        }
                        super.channelRead0(ctx, req);
                        writes.incrementAndGet();
                        if (!parked.isEmpty())
                                wake();
                }
        }

        /* MongoServer.bind's pipeline, with AwaitHandler in place of the
         * stock MongoDatabaseHandler. */
        @SuppressWarnings("deprecation") /* NioEventLoopGroup, as MongoServer */
        public static void main(String[] args) throws Exception {
                store = MVStore.open(args[0]);
                /* 2: index keys by value, documents as BSON. */
                MVMap<String, String> format = store.openMap("standin.format");
                if (!"2".equals(format.get("version"))
                    && store.getMapNames().stream().anyMatch(
                        n -> n.contains("._index_") || n.startsWith("databases.")
                             || n.startsWith("standin.oplog"))) {
                        System.err.println(
                            "StandIn: " + args[0] + " was written by an older "
                            + "stand-in (another storage format); stop the "
                            + "stack and delete it");
                        store.close();
                        System.exit(1);
                }
                format.put("version", "2");
                MongoBackend backend = new IdBackend(store);
                backend.enableOplog();
                EventLoopGroup boss = new NioEventLoopGroup(1);
                EventLoopGroup workers = new NioEventLoopGroup();
                ChannelGroup channels =
                    new DefaultChannelGroup("stand-in", workers.next());
                Channel server =
                    new ServerBootstrap()
                        .group(boss, workers)
                        .channel(NioServerSocketChannel.class)
                        .option(ChannelOption.SO_BACKLOG, 100)
                        .childOption(ChannelOption.TCP_NODELAY, true)
                        .childHandler(new ChannelInitializer<SocketChannel>() {
                                @Override
                                public void initChannel(SocketChannel ch) {
                                        ch.pipeline().addLast(
                                            new MongoWireReplyEncoder(),
                                            new MongoWireMessageEncoder(),
                                            new MongoWireProtocolHandler(),
                                            new AwaitHandler(backend, channels),
                                            new MongoExceptionHandler());
                                }
                        })
                        .bind(args[1], Integer.parseInt(args[2]))
                        .syncUninterruptibly()
                        .channel();
                /* Closing the backend flushes H2. */
                Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                        server.close().syncUninterruptibly();
                        channels.close().syncUninterruptibly();
                        backend.close();
                        boss.shutdownGracefully(0, 5, TimeUnit.SECONDS);
                        workers.shutdownGracefully(0, 5, TimeUnit.SECONDS);
                }));
                System.out.println("StandIn ready on " + args[1] + ":" + args[2]
                                   + " (" + args[0] + ")");
        }
}
