/*
 * The local MongoDB stand-in: mongo-java-server on its H2 backend (data in one
 * file, so it survives a restart) with the oplog enabled, which the bundled
 * main()s leave off and which change streams need.
 * Usage: java -cp '<lib>/*:<classes>' StandIn <h2-file> <host> <port>
 */
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.h2.H2Backend;

public class StandIn {
        public static void main(String[] args) {
                MongoServer server = new MongoServer(new H2Backend(args[0]));
                server.enableOplog();
                /* shutdownNow() closes the backend, which flushes H2. */
                Runtime.getRuntime().addShutdownHook(
                        new Thread(server::shutdownNow));
                server.bind(args[1], Integer.parseInt(args[2]));
                System.out.println("StandIn ready on " + args[1] + ":" + args[2]
                                   + " (" + args[0] + ")");
        }
}
