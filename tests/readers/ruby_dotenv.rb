# Reads env files with the ruby dotenv gem (Dotenv::Environment, as Dotenv.load does), many per
# process. usage: ruby ruby_dotenv.rb FILE...   prints {"<file>": {"values"|"error": ...}}
require "dotenv"
require "json"

result = {}
ARGV.each do |file|
  begin
    result[file] = { "values" => Dotenv::Environment.new(file, true).to_h }
  rescue StandardError, SyntaxError => e
    result[file] = { "error" => e.class.name }
  end
end
$stdout.write(JSON.generate(result))
