// Package devstack runs a real Temporal server and the Temporal Web UI in
// the current process, for the dev stack (`relink dev`). State lives in
// SQLite files under the data directory (temporal.db, and its visibility in
// temporal-visibility.db), so open repairs survive a restart.
// It follows the Temporal CLI's dev server (temporalcli/devserver).
package devstack

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

const (
	host        = "127.0.0.1"
	clusterName = "active"
)

// Options configure the embedded Temporal.
type Options struct {
	DataDir   string
	Namespace string
	// FrontendPort is Temporal's gRPC port (7233 by default).
	FrontendPort int
	// UIPort is the Web UI's port (8233 by default); 0 disables the UI.
	UIPort int
	// MoreNamespaces are created too, with Relink's search attributes (the
	// integration tests give each test a namespace of its own on one
	// server).
	MoreNamespaces []string
	// CodecEndpoint is the remote codec the Web UI decodes payloads with
	// (the gateway's /codec); empty: none.
	CodecEndpoint string
	// InMemory keeps Temporal's database in memory, lost when the server
	// stops (as `temporal server start-dev` without --db-filename): no
	// database writes to disk (the log still goes to DataDir), for servers
	// that need not outlive their process.
	InMemory bool
	// Progress, if set, is told each slow step of the start as it begins
	// (printf-style): the first start sets up databases, and every start
	// takes seconds before the server answers.
	Progress func(format string, args ...any)
}

// Temporal is a running embedded Temporal server and UI.
type Temporal struct {
	server   temporal.Server
	ui       *uiserver.Server
	uiErr    chan error
	Address  string
	UIURL    string
	LogFile  string
	Database string
}

// StartTemporal starts the server (and the UI) and returns once the
// frontend accepts connections.
func StartTemporal(o Options) (*Temporal, error) {
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	if err := SecureDataDir(o.DataDir, temporalFiles...); err != nil {
		return nil, err
	}
	for _, port := range []int{o.FrontendPort, o.UIPort} {
		if port != 0 && !portFree(port) {
			return nil, fmt.Errorf("port %d is in use (is another `relink dev` or Temporal dev server running?)", port)
		}
	}
	t := &Temporal{
		Address:  net.JoinHostPort(host, strconv.Itoa(o.FrontendPort)),
		LogFile:  filepath.Join(o.DataDir, "temporal.log"),
		Database: filepath.Join(o.DataDir, "temporal.db"),
	}
	if o.InMemory {
		t.Database = ""
	}
	// Keys other than SQLite's URI parameters are PRAGMAs, named as SQLite
	// names them. WAL with synchronous=NORMAL survives a crash of this
	// process (an OS crash may lose the last moments); FULL would fsync
	// every one of the ~10 writes a repair makes, which caps the dev stack
	// at a few repairs a second.
	sqlConf := &config.SQL{PluginName: sqliteplugin.PluginName, DatabaseName: t.Database,
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "NORMAL", "busy_timeout": "10000"}}
	if o.InMemory {
		// SQLite's plugin sets the schema up itself in memory mode; the
		// name only tells this server's database from another's.
		sqlConf.DatabaseName = fmt.Sprintf("relink-%d-%d", os.Getpid(), o.FrontendPort)
		sqlConf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
	}
	// SQLite and zap create files 0644; created first, 0600, they keep
	// that mode (SQLite gives its -wal and -shm files the database's).
	for _, f := range []string{t.Database, t.LogFile} {
		if f == "" {
			continue
		}
		if err := createPrivate(f); err != nil {
			return nil, err
		}
	}
	fresh := o.InMemory
	st, err := os.Stat(t.Database)
	if !o.InMemory && err == nil && st.Size() == 0 {
		fresh = true
	}
	if fresh && !o.InMemory {
		o.Progress("setting up Temporal's databases in %s (first start)", o.DataDir)
	}
	// The visibility database first: a start that stops between the two
	// leaves temporal.db empty, and the next one begins again.
	visConf, err := visibilityDatabase(o, t.Database, sqlConf, fresh)
	if err != nil {
		return nil, err
	}
	if fresh && !o.InMemory {
		if err := sqlite.SetupSchema(sqlConf); err != nil {
			return nil, fmt.Errorf("set up Temporal's SQLite schema: %w", err)
		}
	}
	namespaces := append([]string{o.Namespace}, o.MoreNamespaces...)
	for _, name := range namespaces {
		ns, err := sqlite.NewNamespaceConfig(clusterName, name, false, workflows.SearchAttributeTypes)
		if err != nil {
			return nil, fmt.Errorf("namespace config: %w", err)
		}
		if err := sqlite.CreateNamespaces(sqlConf, ns); err != nil {
			return nil, fmt.Errorf("create namespace %s: %w", name, err)
		}
	}

	o.Progress("starting the embedded Temporal server on %s (its log: %s)", t.Address, t.LogFile)
	if err := t.startServer(o, sqlConf, visConf, fresh); err != nil {
		return nil, err
	}
	// A database from an older Relink may lack search attributes added
	// since. The services cache search attributes for a minute (forcing a
	// database read on every use, as the Temporal CLI's dev server does,
	// costs a third of the stack's throughput), so once they are added the
	// server starts again, with every cache fresh.
	if !fresh {
		added, err := addMissingSearchAttributes(t.Address, namespaces)
		if err != nil {
			_ = t.server.Stop()
			return nil, err
		}
		if added {
			o.Progress("added Relink's newer search attributes: starting the Temporal server again")
			_ = t.server.Stop()
			if err := t.startServer(o, sqlConf, visConf, fresh); err != nil {
				return nil, err
			}
		}
	}
	if o.UIPort != 0 {
		t.UIURL = fmt.Sprintf("http://localhost:%d", o.UIPort)
		o.Progress("starting the Temporal Web UI on %s", t.UIURL)
		assets, err := uiAssets(o.DataDir, o.Namespace)
		if err != nil {
			// The UI works without Relink's columns and views: say so
			// and start it as it comes ("" serves its embedded files).
			o.Progress("the Web UI starts without Relink's columns and saved views: %v", err)
			assets = ""
		}
		t.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                host,
			Port:                o.UIPort,
			TemporalGRPCAddress: t.Address,
			EnableUI:            true,
			UIAssetPath:         assets,
			DefaultNamespace:    o.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			Codec:               uiconfig.Codec{Endpoint: o.CodecEndpoint},
			HideLogs:            true,
			DisableNewsFetch:    true, // no calls home from a dev machine
		}))
		t.uiErr = make(chan error, 1)
		go func() { t.uiErr <- t.ui.Start() }()
	}
	return t, nil
}

// visibilityDatabase is where the server keeps visibility (the list, the
// counts, search attributes): a database of its own, so that its writes,
// two per repair and the costliest the server makes in SQLite (a row with
// dozens of indexed columns), no longer queue on the one connection that
// starts, signals and workflow tasks wait for (under a burst of starts,
// a repair's signal waited behind them for up to half a second). nil: the
// main database, the layout of a data directory from an older Relink,
// which keeps it so that its repairs stay listed.
func visibilityDatabase(o Options, database string, main *config.SQL, fresh bool) (*config.SQL, error) {
	vis := *main
	vis.ConnectAttributes = maps.Clone(main.ConnectAttributes)
	if o.InMemory {
		vis.DatabaseName += "-visibility"
		return &vis, nil
	}
	vis.DatabaseName = filepath.Join(filepath.Dir(database), visibilityFile)
	st, err := os.Stat(vis.DatabaseName)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("visibility database: %w", err)
	}
	if err == nil && st.Size() == 0 {
		// Created, never set up (an older start that stopped half-way):
		// as good as missing.
		err = os.ErrNotExist
	}
	if err != nil && !fresh {
		executions, listed, err := countRows(main)
		if err != nil {
			return nil, err
		}
		switch {
		case listed > 0:
			return nil, nil // an older data directory's single database
		case executions > 0:
			// Its workflows were listed in a temporal-visibility.db that
			// is gone: starting would show none of them.
			return nil, fmt.Errorf("%s is missing while %s holds workflows: restore it, or remove the data directory to start afresh (task reset)",
				vis.DatabaseName, database)
		}
		// Nothing to list yet: the new layout loses nothing.
	}
	if fresh || err != nil {
		// (Again after a start that stopped half-way: temporal.db is
		// still empty then.)
		for _, f := range sqliteFiles(vis.DatabaseName) {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("visibility database: %w", err)
			}
		}
		if err := createPrivate(vis.DatabaseName); err != nil {
			return nil, err
		}
		// Both schemas, as for the main database: the execution tables
		// stay empty here.
		if err := sqlite.SetupSchema(&vis); err != nil {
			return nil, fmt.Errorf("set up Temporal's SQLite visibility schema: %w", err)
		}
	}
	return &vis, nil
}

// countRows counts the workflows in a database and those it lists. The
// server's own (its scanners, in the temporal-system namespace, which every
// data directory has) are not counted as workflows: losing their listing
// loses nothing anyone reads.
func countRows(conf *config.SQL) (executions, listed int, err error) {
	db, err := sql.Open("sqlite", "file:"+conf.DatabaseName+"?mode=rw")
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", conf.DatabaseName, err)
	}
	defer db.Close()
	system := uuid.MustParse(primitives.SystemNamespaceID)
	err = db.QueryRow("SELECT (SELECT count(*) FROM executions WHERE namespace_id != ?), (SELECT count(*) FROM executions_visibility)",
		system[:]).Scan(&executions, &listed)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", conf.DatabaseName, err)
	}
	return executions, listed, nil
}

// startServer builds and starts the Temporal server (on fresh ports for
// its internal services). fresh: the database was created by this start.
// visConf nil keeps visibility in the main database.
func (t *Temporal) startServer(o Options, sqlConf, visConf *config.SQL, fresh bool) error {
	// One partition per task queue: a single machine gains nothing from
	// four, which forward polls and tasks between them and each take a
	// Worker Deployment routing change before it is complete. New tasks go
	// to one. A database this start did not create may come from an older
	// Relink, with tasks in the other three: all four are still read there
	// (reading fewer would strand those tasks, and their repairs with them).
	readPartitions := 4
	if fresh {
		readPartitions = 1
	}
	conf, err := serverConfig(o, t.Address, sqlConf, visConf)
	if err != nil {
		return err
	}
	logger := log.NewZapLogger(log.BuildZapLogger(log.Config{Level: "warn", OutputFile: t.LogFile}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return err
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return err
	}
	t.server, err = temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		// Static membership: the services' ports change on every start,
		// and ringpop would otherwise try to join the last run's members
		// recorded in the database.
		temporal.WithStaticHosts(staticHosts(conf)),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// The Temporal CLI dev server's persistence rates: the services
			// would otherwise throttle themselves under load (the bench, the
			// tests; the Worker Versioning test timed out waiting for its
			// routing). Search attributes are cached (StartTemporal).
			dynamicconfig.FrontendPersistenceMaxQPS.Key():                    10000,
			dynamicconfig.HistoryPersistenceMaxQPS.Key():                     45000,
			dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
			dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():           readPartitions,
			dynamicconfig.MatchingNumTaskqueueWritePartitions.Key():          1,
			// Task priority (on by default) and fairness across
			// institutions (workflows/priority.go): users first, and one
			// bank's flood of breaks does not starve the others.
			dynamicconfig.MatchingEnableFairness.Key(): true,
			// Each namespace's system worker (which runs Worker Deployment
			// bookkeeping) starts at once, even with the integration
			// tests' dozens of namespaces (default: 10 a second).
			dynamicconfig.WorkerPerNamespaceWorkerStartRate.Key(): 1000.0,
		}),
	)
	if err != nil {
		return fmt.Errorf("build Temporal server: %w", err)
	}
	if err := t.server.Start(); err != nil {
		return fmt.Errorf("start Temporal server: %w", err)
	}
	return nil
}

// addMissingSearchAttributes adds Relink's search attributes to each
// namespace that lacks any, and says whether it added some.
func addMissingSearchAttributes(address string, namespaces []string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var c client.Client
	for {
		var err error
		if c, err = client.DialContext(ctx, client.Options{HostPort: address, Logger: quiet}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("reach the embedded Temporal server: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer c.Close()
	someAdded := false
	for _, ns := range namespaces {
		added, err := app.AddMissingSearchAttributes(ctx, c, ns)
		if err != nil {
			return false, fmt.Errorf("namespace %s: %w", ns, err)
		}
		someAdded = someAdded || added
	}
	return someAdded, nil
}

// SecureDataDir creates dir 0700 and makes the named files in it 0600
// (older versions made them 0755 and 0644): the directory holds the
// payload and token keys and the history database. It tightens only
// Relink's own files, and the directory itself only when it is empty or
// already Relink's, so RELINK_DATA_DIR=$HOME changes nothing else.
func SecureDataDir(dir string, files ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(dir, "temporal.db"))
	if len(entries) == 0 || statErr == nil {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	for _, name := range files {
		err := os.Chmod(filepath.Join(dir, name), 0o600)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}

// visibilityFile is the embedded server's visibility database, next to
// temporal.db.
const visibilityFile = "temporal-visibility.db"

// temporalFiles are the embedded server's files in the data directory.
var temporalFiles = append(append(sqliteFiles("temporal.db"), sqliteFiles(visibilityFile)...), "temporal.log")

// sqliteFiles are a SQLite database's file and the journals beside it.
func sqliteFiles(database string) []string {
	return []string{database, database + "-wal", database + "-shm", database + "-journal"}
}

func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// UIErrors reports the UI server's exit, if it fails.
func (t *Temporal) UIErrors() <-chan error { return t.uiErr }

// Stop stops the UI and the server.
func (t *Temporal) Stop() {
	if t.ui != nil {
		t.ui.Stop()
	}
	_ = t.server.Stop()
}

func serverConfig(o Options, address string, sqlConf, visConf *config.SQL) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence.DefaultStore = "sqlite-default"
	conf.Persistence.VisibilityStore = "sqlite-default"
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite-default": {SQL: sqlConf}}
	if visConf != nil {
		conf.Persistence.VisibilityStore = "sqlite-visibility"
		conf.Persistence.DataStores["sqlite-visibility"] = config.DataStore{SQL: visConf}
	}
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: address, ClusterID: "relink-dev"},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for i, name := range []string{"frontend", "history", "matching", "worker"} {
		svc := config.Service{RPC: config.RPC{BindOnIP: host}}
		if i == 0 {
			svc.RPC.GRPCPort = o.FrontendPort
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			svc.RPC.HTTPPort = port
		} else {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			svc.RPC.GRPCPort = port
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = address
	return &conf, nil
}

func staticHosts(conf *config.Config) map[primitives.ServiceName]static.Hosts {
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, name := range []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService,
		primitives.MatchingService, primitives.WorkerService} {
		port := conf.Services[string(name)].RPC.GRPCPort
		hosts[name] = static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return hosts
}

// freePort is a port for one of the server's internal services, chosen
// by the kernel (port 0). Not a random pick from a fixed range: processes
// choosing from one range collide with each other between the check and
// the bind (the integration tests choose theirs below the kernel's range,
// so they never meet these).
func freePort() (int, error) {
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
